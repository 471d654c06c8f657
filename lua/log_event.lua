--[[
log_event: append a custom, LLM, tool-call or stream event to an intent's log.

Invariants:
  - the event gets the next per-intent sequence number; the intent's version and
    state do not change (events are not state), so logging never causes a conflict
  - types that oibus's own scripts record (lifecycle, state, leases, …) cannot be
    forged here: includes/event_types.lua lists them and such a type is INVALID
  - the payload must be a JSON object within the payload limit

KEYS:
  [1] intent  hash   {ns:p}:i:<id>
  [2] events  stream {ns:p}:e:<id>
  [3] bus     stream {ns:p}:bus

ARGV:
  [1] id          the intent id
  [2] event_type  1-64 characters of a-z A-Z 0-9 _ . : -
  [3] payload     JSON object text
  [4] actor       who logs it

Returns: {event stream id, sequence number, created_at (microseconds)}
Errors: INVALID, TOO_LARGE, NOT_FOUND
Events: the given event_type
]]
-- @include "fail"
-- @include "now_us"
-- @include "limits"
-- @include "validate"
-- @include "json_text"
-- @include "event_types"
-- @include "emit"

local rcall = redis.call
local ik, ek, bk = KEYS[1], KEYS[2], KEYS[3]
local id, etype, payload, actor = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local bad_actor = check_actor(actor)
if bad_actor then return bad_actor end

if not is_id(id) or not key_ends(ik, ":i:" .. id) then
  return fail("INVALID", "malformed intent id", {field = "intent_id"})
end
if type(etype) ~= "string" or #etype < 1 or #etype > 64
    or not string.find(etype, "^[%w_%.:%-]+$") then
  return fail("INVALID", "event_type must be 1-64 characters of a-z A-Z 0-9 _ . : -",
    {field = "event_type"})
end
if RESERVED_EVENT_TYPES[etype] then
  return fail("INVALID", etype .. " is recorded by oibus itself and cannot be logged",
    {field = "event_type"})
end
if #payload > LIMIT_PAYLOAD_BYTES then
  return fail("TOO_LARGE", "payload is over " .. LIMIT_PAYLOAD_BYTES .. " bytes",
    {field = "payload", limit = LIMIT_PAYLOAD_BYTES, size = #payload})
end
if not js_valid(payload) or js_kind(payload) ~= "object" then
  return fail("INVALID", "payload must be a JSON object", {field = "payload"})
end
if rcall("EXISTS", ik) == 0 then
  return fail("NOT_FOUND", "intent " .. id .. " does not exist", {id = id})
end

local at = now_us()
local eid, seq = emit(ik, ek, bk, id, etype, actor, payload, at)
return {eid, seq, int(at)}
