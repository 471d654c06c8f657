--[[
resolve_arbitration: record the arbiter's resolution of a pending arbitration request.

Invariants:
  - only a pending request is resolved, once: resolving a resolved one is CONFLICT and
    changes nothing (the first resolution stands)
  - the resolution, rationale, resolver (the actor) and time are added to the record
    byte for byte around what was stored; the rest of the record is unchanged
  - closed intents still resolve their pending requests; the version does not change
  - the record and its arbitration_resolved event are written together

KEYS:
  [1] intent        hash   {ns:p}:i:<id>
  [2] arbitrations  hash   {ns:p}:ar:<id>
  [3] events        stream {ns:p}:e:<id>
  [4] bus           stream {ns:p}:bus

ARGV:
  [1] id              the intent id
  [2] arbitration_id  the request
  [3] resolution      the outcome (1 byte to 64 KiB)
  [4] rationale       why ("" for none; at most 64 KiB)
  [5] actor           the resolver

Returns: the resolved request as JSON text
Errors: INVALID, NOT_FOUND, CONFLICT
Events: arbitration_resolved
]]
-- @include "fail"
-- @include "now_us"
-- @include "limits"
-- @include "validate"
-- @include "open_intent"
-- @include "emit"
-- @include "gov_records"

local rcall = redis.call
local ik, ak, ek, bk = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, arb_id, resolution, rationale, actor = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local bad = check_actor(actor)
if bad then return bad end
if not is_id(arb_id) then
  return fail("INVALID", "malformed arbitration id", {field = "arbitration_id"})
end
if not is_text(resolution, LIMIT_TEXT_BYTES) then
  return fail("INVALID", "resolution must be a non-empty string of at most " .. LIMIT_TEXT_BYTES
    .. " bytes", {field = "resolution"})
end
if rationale ~= "" and not is_text(rationale, LIMIT_TEXT_BYTES) then
  return fail("INVALID", "rationale must be a string of at most " .. LIMIT_TEXT_BYTES .. " bytes",
    {field = "rationale"})
end
local cur, err = open_intent(ik, id, {"status"})
if cur == nil then return err end
if not key_ends(ak, ":ar:" .. id) then
  return fail("INVALID", "arbitrations key is not this intent's", {field = "intent_id"})
end
local record = rcall("HGET", ak, arb_id)
if not record then
  return fail("NOT_FOUND", "intent " .. id .. " has no arbitration request " .. arb_id,
    {resource = "arbitration", id = arb_id})
end
if not gov_is(record, "pending") then
  return fail("CONFLICT", "arbitration " .. arb_id .. " is already resolved",
    {arbitration_id = arb_id, status = "resolved"})
end

local now = now_us()
record = gov_close(record, "pending", '"status":"resolved","resolution":'
  .. cjson.encode(resolution) .. ',"rationale":' .. gov_opt(rationale) .. ',"resolved_by":'
  .. cjson.encode(actor) .. ',"resolved_us":"' .. int(now) .. '"}')
rcall("HSET", ak, arb_id, record)
emit(ik, ek, bk, id, "arbitration_resolved", actor,
  '{"arbitration_id":"' .. arb_id .. '","resolution":' .. cjson.encode(resolution)
  .. ',"rationale":' .. gov_opt(rationale) .. "}", now)
return record
