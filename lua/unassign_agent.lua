--[[
unassign_agent: remove an agent from an intent's assignees (idempotent).

Invariants:
  - removing an agent that is not assigned changes nothing and appends nothing
  - allowed on closed intents too: it only releases a name, never reopens work
  - the version is bumped with the agent_unassigned event

KEYS:
  [1] intent  hash   {ns:p}:i:<id>
  [2] state   hash   {ns:p}:s:<id>
  [3] events  stream {ns:p}:e:<id>
  [4] bus     stream {ns:p}:bus

ARGV:
  [1] id        the intent id
  [2] agent_id  the agent to remove
  [3] actor     who removes it

Returns: the intent as JSON (includes/snapshot.lua)
Errors: INVALID, NOT_FOUND
Events: agent_unassigned
]]
-- @include "fail"
-- @include "now_us"
-- @include "iso_time"
-- @include "open_intent"
-- @include "emit"
-- @include "snapshot"

local rcall = redis.call
local ik, sk, ek, bk = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, agent, actor = ARGV[1], ARGV[2], ARGV[3]
local bad_actor = check_actor(actor)
if bad_actor then return bad_actor end

if not is_text(agent, 256) then
  return fail("INVALID", "agent_id must be a non-empty string of at most 256 bytes",
    {field = "agent_id"})
end
local cur, err = open_intent(ik, id, {"agents"})
if cur == nil then return err end
local agents = cjson.decode(cur[2])
local kept = {}
for n = 1, #agents do
  if agents[n] ~= agent then kept[#kept + 1] = agents[n] end
end
if #kept == #agents then return snapshot(ik, sk) end

local at = now_us()
local version = tonumber(cur[1]) + 1
local encoded = "[]"
if #kept > 0 then encoded = cjson.encode(kept) end
rcall("HSET", ik, "agents", encoded, "version", version, "updated_at", iso_time(at))
emit(ik, ek, bk, id, "agent_unassigned", actor,
  '{"agent_id":' .. cjson.encode(agent) .. ',"version":' .. version .. "}", at)
return snapshot(ik, sk)
