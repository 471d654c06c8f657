--[[
record_decision: append an immutable decision record to an intent (RFC-0003).

Invariants:
  - decision records are only ever appended (a stream): none is changed or removed
  - the record keeps the decision, rationale, who decided, who recorded it (the actor),
    evidence, decision type, context and alternatives; the JSON values are kept verbatim
  - decisions may be recorded on closed intents too (an audit record, like log_event);
    the intent's version does not change
  - the record and its decision_recorded event are written together

KEYS:
  [1] intent     hash   {ns:p}:i:<id>
  [2] decisions  stream {ns:p}:dr:<id>
  [3] events     stream {ns:p}:e:<id>
  [4] bus        stream {ns:p}:bus

ARGV:
  [1] id             the intent id
  [2] decision_id    the record's id (a UUID chosen by the client)
  [3] decision       what was decided (1 byte to 64 KiB)
  [4] rationale      why (1 byte to 64 KiB)
  [5] decided_by     who decided (at most 256 bytes)
  [6] decision_type  a category ("" for none; at most 256 bytes)
  [7] evidence       JSON list
  [8] context        JSON object
  [9] alternatives   JSON list (the options that were considered)
  [10] actor         who records it

Returns: the record as JSON text; its stream entry has the fields d (the record) and at
Errors: INVALID, TOO_LARGE, NOT_FOUND
Events: decision_recorded
]]
-- @include "fail"
-- @include "now_us"
-- @include "limits"
-- @include "validate"
-- @include "open_intent"
-- @include "emit"
-- @include "gov_records"

local rcall = redis.call
local ik, dk, ek, bk = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, dec_id, decision, rationale, decided_by, dtype = ARGV[1], ARGV[2], ARGV[3], ARGV[4],
  ARGV[5], ARGV[6]
local evidence, context, alternatives, actor = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local bad = check_actor(actor)
if bad then return bad end
if not is_id(dec_id) then
  return fail("INVALID", "malformed decision id", {field = "decision_id"})
end
for _, f in ipairs({{decision, "decision"}, {rationale, "rationale"}}) do
  if not is_text(f[1], LIMIT_TEXT_BYTES) then
    return fail("INVALID", f[2] .. " must be a non-empty string of at most " .. LIMIT_TEXT_BYTES
      .. " bytes", {field = f[2]})
  end
end
if not is_text(decided_by, 256) then
  return fail("INVALID", "decided_by must be a non-empty string of at most 256 bytes",
    {field = "decided_by"})
end
if dtype ~= "" and not is_text(dtype, 256) then
  return fail("INVALID", "decision_type must be a string of at most 256 bytes",
    {field = "decision_type"})
end
bad = gov_size(#evidence + #context + #alternatives, "evidence")
  or gov_json(evidence, "array", "evidence") or gov_json(context, "object", "context")
  or gov_json(alternatives, "array", "alternatives")
if bad then return bad end
local cur, err = open_intent(ik, id, {})
if cur == nil then return err end
if not key_ends(dk, ":dr:" .. id) then
  return fail("INVALID", "decisions key is not this intent's", {field = "intent_id"})
end

local now = now_us()
local record = '{"id":"' .. dec_id .. '","decision":' .. cjson.encode(decision)
  .. ',"rationale":' .. cjson.encode(rationale) .. ',"decided_by":' .. cjson.encode(decided_by)
  .. ',"recorded_by":' .. cjson.encode(actor) .. ',"decision_type":' .. gov_opt(dtype)
  .. ',"evidence":' .. evidence .. ',"context":' .. context .. ',"alternatives":'
  .. alternatives .. ',"created_us":"' .. int(now) .. '"}'
rcall("XADD", dk, "*", "d", record, "at", int(now))
emit(ik, ek, bk, id, "decision_recorded", actor,
  '{"decision_id":"' .. dec_id .. '","decision":' .. cjson.encode(decision) .. ',"decided_by":'
  .. cjson.encode(decided_by) .. ',"decision_type":' .. gov_opt(dtype) .. "}", now)
return record
