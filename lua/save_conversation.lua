--[[
save_conversation: write an LLM agent's conversation record (sdk/llm/conversation.py),
fenced by the agent's lease on the intent.

Invariants:
  - with a lease named, the record is written only while that lease is the writer's live,
    current lease on the intent: a process whose lease expired or was superseded (a
    replica resumed its conversation) can no longer overwrite the record the new holder
    resumes from; otherwise nothing is written and the error says why
  - without a lease (a think() outside a handler) the write is a plain SET
  - the record always carries a TTL, so an intent that never completes leaves nothing
    behind for ever

KEYS:
  [1] intent  hash    {ns:p}:i:<id>
  [2] leases  hash    {ns:p}:l:<id>
  [3] record  string  {ns:p}:llm:<id>:<agent>

ARGV:
  [1] id        the intent id
  [2] lease_id  the writer's lease on the intent, or "" for none
  [3] actor     the agent writing (the lease's holder)
  [4] record    the conversation as JSON text
  [5] ttl       seconds the record lives after this write

Returns: 1
Errors: INVALID, NOT_FOUND, LEASE_CONFLICT, LEASE_EXPIRED
Events: (none)
]]
-- @include "fail"
-- @include "leases"

local ik, lk, rk = KEYS[1], KEYS[2], KEYS[3]
local id, lease_id, actor, record, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
if not ttl or ttl < 1 then
  return fail("INVALID", "the record's ttl must be a positive number of seconds", {field = "ttl"})
end
if lease_id ~= "" then
  local l, err = lease_open(ik, lk, id, lease_id, actor)
  if l == nil then return err end
  local not_held = lease_check_held(l, actor, now_us())
  if not_held then return not_held end
end
redis.call("SET", rk, record, "EX", math.floor(ttl))
return 1
