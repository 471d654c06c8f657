--[[
request_arbitration: ask for human or higher-authority arbitration on an intent (RFC-0003).

Invariants:
  - the request is stored pending under its id (a UUID chosen by the client) with the
    requestor, reason, options and context; options and context are kept verbatim
  - an id already used on this intent is EXISTS and changes nothing
  - closed intents take no new requests; an intent keeps at most GOV_ARBITRATIONS
  - the intent's version does not change (governance is not state); the record and its
    arbitration_requested event are written together

KEYS:
  [1] intent        hash   {ns:p}:i:<id>
  [2] arbitrations  hash   {ns:p}:ar:<id>
  [3] events        stream {ns:p}:e:<id>
  [4] bus           stream {ns:p}:bus

ARGV:
  [1] id              the intent id
  [2] arbitration_id  the new request's id
  [3] reason          why (1 byte to 64 KiB)
  [4] options         JSON list (the choices put to the arbiter)
  [5] context         JSON object
  [6] actor           the requestor

Returns: the request as JSON text (includes/gov_records.lua)
Errors: INVALID, TOO_LARGE, NOT_FOUND, CLOSED, EXISTS
Events: arbitration_requested
]]
-- @include "fail"
-- @include "now_us"
-- @include "limits"
-- @include "validate"
-- @include "terminal"
-- @include "open_intent"
-- @include "emit"
-- @include "gov_records"

local rcall = redis.call
local ik, ak, ek, bk = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, arb_id, reason, options, context, actor =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local bad = check_actor(actor)
if bad then return bad end
if not is_id(arb_id) then
  return fail("INVALID", "malformed arbitration id", {field = "arbitration_id"})
end
if not is_text(reason, LIMIT_TEXT_BYTES) then
  return fail("INVALID", "reason must be a non-empty string of at most " .. LIMIT_TEXT_BYTES
    .. " bytes", {field = "reason"})
end
bad = gov_size(#options + #context, "options")
  or gov_json(options, "array", "options") or gov_json(context, "object", "context")
if bad then return bad end
local cur, err = open_intent(ik, id, {"status"})
if cur == nil then return err end
if not key_ends(ak, ":ar:" .. id) then
  return fail("INVALID", "arbitrations key is not this intent's", {field = "intent_id"})
end
if TERMINAL[cur[2]] then
  return fail("CLOSED", "intent " .. id .. " is " .. cur[2] .. " and takes no arbitration requests",
    {status = cur[2]})
end
if rcall("HEXISTS", ak, arb_id) == 1 then
  return fail("EXISTS", "arbitration " .. arb_id .. " already exists", {id = arb_id})
end
if rcall("HLEN", ak) >= GOV_ARBITRATIONS then
  return fail("TOO_LARGE", "an intent keeps at most " .. GOV_ARBITRATIONS
    .. " arbitration requests", {field = "arbitration_id", limit = GOV_ARBITRATIONS})
end

local now = now_us()
local record = '{"id":"' .. arb_id .. '","requestor":' .. cjson.encode(actor) .. ',"reason":'
  .. cjson.encode(reason) .. ',"options":' .. options .. ',"context":' .. context
  .. ',"created_us":"' .. int(now) .. '",' .. gov_tail("pending")
rcall("HSET", ak, arb_id, record)
emit(ik, ek, bk, id, "arbitration_requested", actor,
  '{"arbitration_id":"' .. arb_id .. '","reason":' .. cjson.encode(reason) .. "}", now)
return record
