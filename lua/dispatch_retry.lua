--[[
dispatch_retry: hand a due retry to the intent's agents (the daemon's retry loop calls this
when a member of the partition's due set reaches its time, RFC-0010).

Invariants:
  - dispatched once: only the due entry the caller saw (same score) is dispatched, and
    dispatching removes it; a retry rescheduled since, or already dispatched by another
    daemon, is a no-op
  - not before its time by the server's clock; a closed intent's retry is dropped
  - the dispatch event carries the next attempt's number and the last failure's error

KEYS:
  [1] intent    hash   {ns:p}:i:<id>
  [2] failures  stream {ns:p}:fl:<id>
  [3] events    stream {ns:p}:e:<id>
  [4] bus       stream {ns:p}:bus
  [5] due       zset   {ns:p}:due:retry

ARGV:
  [1] id      the intent id
  [2] due     the due time (µs) the caller read from the due set
  [3] actor   who dispatches (the daemon)

Returns: {1, µs since the due time} when this call dispatched it, else {0, reason}
Errors: INVALID
Events: retry_dispatched
]]
-- @include "fail"
-- @include "validate"
-- @include "terminal"
-- @include "now_us"
-- @include "iso_time"
-- @include "emit"

local rcall = redis.call
local ik, fk, ek, bk, dk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, due, actor = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local bad_actor = check_actor(actor)
if bad_actor then return bad_actor end
if not is_id(id) or not key_ends(ik, ":i:" .. id) or not key_ends(fk, ":fl:" .. id)
    or not key_ends(ek, ":e:" .. id) or not key_ends(dk, ":due:retry") or due == nil then
  return fail("INVALID", "malformed intent id, keys or due time", {field = "intent_id"})
end
local score = rcall("ZSCORE", dk, id)
if not score or tonumber(score) ~= due then return {0, "superseded"} end
local now = now_us()
if now < due then return {0, "early"} end
local f = rcall("HMGET", ik, "status", "agents")
if not f[1] or TERMINAL[f[1]] then
  rcall("ZREM", dk, id)
  return {0, "closed"}
end
local attempt, code, message = 0, nil, ""
local tail = rcall("XREVRANGE", fk, "+", "-", "COUNT", 1)
if #tail > 0 then
  local e = tail[1][2]
  for n = 1, #e, 2 do
    if e[n] == "n" then attempt = tonumber(e[n + 1]) or 0
    elseif e[n] == "c" and e[n + 1] ~= "" then code = e[n + 1]
    elseif e[n] == "m" then message = e[n + 1] end
  end
end
rcall("ZREM", dk, id)
local code_json = "null"
if code then code_json = cjson.encode(code) end
emit(ik, ek, bk, id, "retry_dispatched", actor, '{"attempt_number":' .. int(attempt + 1)
  .. ',"failed_attempt":' .. int(attempt) .. ',"last_error":{"error_code":' .. code_json
  .. ',"error_message":' .. cjson.encode(message) .. '},"agents":' .. (f[2] or "[]")
  .. ',"due_at":"' .. iso_time(due) .. '"}', now)
return {1, int(now - due)}
