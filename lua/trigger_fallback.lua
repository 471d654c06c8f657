--[[
trigger_fallback: hand an intent whose retries are exhausted to its policy's fallback agent
(RFC-0010; the daemon calls this for every retries_exhausted it reads on the bus).

Invariants:
  - once per exhaustion: the policy records when its fallback was triggered, and a later
    call finds it and changes nothing (so a replayed bus entry is harmless)
  - only when retries are exhausted, the policy names a fallback agent and the intent is
    open; the fallback agent becomes the intent's assignee (the agents it replaces are
    named in the event) with the version bumped
  - the assignment, fallback_triggered and agent_assigned go together

KEYS:
  [1] intent  hash   {ns:p}:i:<id>
  [2] policy  hash   {ns:p}:rp:<id>
  [3] events  stream {ns:p}:e:<id>
  [4] bus     stream {ns:p}:bus

ARGV:
  [1] id      the intent id
  [2] actor   who triggers it (the daemon)

Returns: {1, fallback agent} when this call handed the intent over, else {0, reason}
Errors: INVALID
Events: fallback_triggered, agent_assigned
]]
-- @include "fail"
-- @include "validate"
-- @include "terminal"
-- @include "now_us"
-- @include "iso_time"
-- @include "emit"

local rcall = redis.call
local ik, pk, ek, bk = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, actor = ARGV[1], ARGV[2]
local bad_actor = check_actor(actor)
if bad_actor then return bad_actor end
if not is_id(id) or not key_ends(ik, ":i:" .. id) or not key_ends(pk, ":rp:" .. id)
    or not key_ends(ek, ":e:" .. id) then
  return fail("INVALID", "malformed intent id or keys", {field = "intent_id"})
end
local p = rcall("HMGET", pk, "exhausted", "fallback_agent_id", "fallback_at")
if not p[1] then return {0, "not_exhausted"} end
if p[3] then return {0, "already_triggered"} end
if not p[2] then return {0, "no_fallback"} end
local f = rcall("HMGET", ik, "status", "agents", "version")
if not f[1] or TERMINAL[f[1]] then return {0, "closed"} end

local at = now_us()
local version = tonumber(f[3]) + 1
local agent_json = cjson.encode(p[2])
rcall("HSET", pk, "fallback_at", int(at))
rcall("HSET", ik, "agents", "[" .. agent_json .. "]", "version", version, "updated_at", iso_time(at))
emit(ik, ek, bk, id, "fallback_triggered", actor, '{"fallback_agent_id":' .. agent_json
  .. ',"previous_agents":' .. (f[2] or "[]") .. ',"failed_attempts":' .. p[1]
  .. ',"version":' .. version .. "}", at)
emit(ik, ek, bk, id, "agent_assigned", actor, '{"agent_id":' .. agent_json .. ',"version":'
  .. version .. ',"reason":"fallback"}', at, p[2])
return {1, p[2]}
