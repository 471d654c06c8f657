--[[
set_status: move an intent through its lifecycle (RFC-0001/0002).

Invariants:
  - only the transitions in includes/statuses.lua are allowed; completed and abandoned
    are terminal; a forbidden or same-status move is TRANSITION and writes nothing
  - a given expected version must equal the current one
  - the status, its index entry, the bumped version and status_changed go together

KEYS:
  [1] intent     hash   {ns:p}:i:<id>
  [2] state      hash   {ns:p}:s:<id>
  [3] events     stream {ns:p}:e:<id>
  [4] bus        stream {ns:p}:bus
  [5+] ix_status zset   {ns:p}:x:s:<status>, one per status in the order of STATUSES

ARGV:
  [1] id        the intent id
  [2] version   the version the caller read, or "" to skip the check
  [3] status    the new status
  [4] reason    free text recorded in the event ("" for none)
  [5] actor     who changes it

Returns: {the intent as JSON (includes/snapshot.lua), moves}: moves is a JSON array
  with one array (id, status, version, portfolio ids) for every intent whose status changed
  (see bus/moves.py)
Errors: INVALID, TOO_LARGE, NOT_FOUND, CONFLICT, TRANSITION
Events: status_changed
]]
-- @include "fail"
-- @include "now_us"
-- @include "iso_time"
-- @include "limits"
-- @include "statuses"
-- @include "open_intent"
-- @include "emit"
-- @include "snapshot"

local rcall = redis.call
local ik, sk, ek, bk = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, expected, to, reason, actor = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local bad_actor = check_actor(actor)
if bad_actor then return bad_actor end

local to_index = status_index(to)
if to_index == nil then
  return fail("INVALID", "unknown status " .. tostring(to) .. "; one of " .. table.concat(STATUSES, ", "),
    {field = "status"})
end
if #KEYS ~= 4 + #STATUSES then
  return fail("INVALID", "expected one index key per status", {field = "keys"})
end
for n = 1, #STATUSES do
  if not key_ends(KEYS[4 + n], ":x:s:" .. STATUSES[n]) then
    return fail("INVALID", "status index keys are out of order", {field = "keys"})
  end
end
if not is_utf8(reason) then
  return fail("INVALID", "reason must be UTF-8 text", {field = "reason"})
end
if #reason > LIMIT_TEXT_BYTES then
  return fail("TOO_LARGE", "reason is over " .. LIMIT_TEXT_BYTES .. " bytes",
    {field = "reason", limit = LIMIT_TEXT_BYTES, size = #reason})
end
local cur, err = open_intent(ik, id, {"status", "created_us", "pf"})
if cur == nil then return err end
local version, from = tonumber(cur[1]), cur[2]
if expected ~= "" and tonumber(expected) ~= version then
  return fail("CONFLICT", "intent " .. id .. " is at version " .. version .. ", not " .. expected,
    {current_version = version})
end
if not TRANSITIONS[from][to] then
  return fail("TRANSITION", "cannot move intent " .. id .. " from " .. from .. " to " .. to,
    {from_status = from, to_status = to})
end

local at = now_us()
local member = string.format("%016.0f", tonumber(cur[3])) .. ":" .. id
rcall("ZREM", KEYS[4 + status_index(from)], member)
rcall("ZADD", KEYS[4 + to_index], 0, member)
version = version + 1
rcall("HSET", ik, "status", to, "version", version, "updated_at", iso_time(at))
local payload = '{"from":"' .. from .. '","to":"' .. to .. '","version":' .. version
if reason ~= "" then payload = payload .. ',"reason":' .. cjson.encode(reason) end
emit(ik, ek, bk, id, "status_changed", actor, payload .. "}", at)
local moves = '[[' .. cjson.encode(id) .. ',"' .. to .. '",' .. version .. ',' .. (cur[4] or "[]") .. ']]'
return {snapshot(ik, sk), moves}
