--[[
assign_agent: add an agent to an intent's assignees (idempotent).

Invariants:
  - assigning an agent that is already assigned changes nothing and appends nothing
  - closed (completed/abandoned) intents take no new assignees
  - at most LIMIT_AGENTS assignees; the version is bumped with the agent_assigned event

KEYS:
  [1] intent  hash   {ns:p}:i:<id>
  [2] state   hash   {ns:p}:s:<id>
  [3] events  stream {ns:p}:e:<id>
  [4] bus     stream {ns:p}:bus

ARGV:
  [1] id        the intent id
  [2] agent_id  the agent to assign (1-256 bytes)
  [3] actor     who assigns

Returns: the intent as JSON (includes/snapshot.lua)
Errors: INVALID, NOT_FOUND, CLOSED, TOO_LARGE
Events: agent_assigned
]]
-- @include "fail"
-- @include "now_us"
-- @include "iso_time"
-- @include "limits"
-- @include "terminal"
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
local cur, err = open_intent(ik, id, {"status", "agents"})
if cur == nil then return err end
if TERMINAL[cur[2]] then
  return fail("CLOSED", "intent " .. id .. " is " .. cur[2] .. " and takes no new agents",
    {status = cur[2]})
end
local agents = cjson.decode(cur[3])
for n = 1, #agents do
  if agents[n] == agent then return snapshot(ik, sk) end
end
if #agents >= LIMIT_AGENTS then
  return fail("TOO_LARGE", "an intent has at most " .. LIMIT_AGENTS .. " agents",
    {field = "agent_id", limit = LIMIT_AGENTS, size = #agents + 1})
end
agents[#agents + 1] = agent

local at = now_us()
local version = tonumber(cur[1]) + 1
rcall("HSET", ik, "agents", cjson.encode(agents), "version", version, "updated_at", iso_time(at))
emit(ik, ek, bk, id, "agent_assigned", actor,
  '{"agent_id":' .. cjson.encode(agent) .. ',"version":' .. version .. "}", at, agent)
return snapshot(ik, sk)
