--[[
delete_memory: remove an entry of an agent's memory and its index members (RFC-0015).

Invariants:
  - an absent entry changes nothing; an expired one counts as absent (and is removed)
  - the entry, its expiry and all its index members are removed together
  - at most MEMORY_PURGE other expired entries are removed on the way (bounded work)

KEYS:
  [1] meta    hash  {ns:m:<agent>}:meta
  [2] values  hash  {ns:m:<agent>}:val
  [3] expiry  zset  {ns:m:<agent>}:exp
  [4] index   zset  {ns:m:<agent>}:idx

ARGV:
  [1] agent   the agent id (the keys must be its memory keys)
  [2] key     the entry's key

Returns: 1 when a live entry was removed, 0 when there was none
Errors: INVALID, TOO_LARGE
Events: (none)
]]
-- @include "memory"

local k = KEYS
local agent, key = ARGV[1], ARGV[2]
local bad = mem_check_keys(k, agent) or mem_key(key)
if bad then return bad end

local now = now_us()
local old_text = redis.call("HGET", k[1], key)
if not old_text then return 0 end
local live = not mem_expired(k[3], key, now)
mem_drop(k, key, mem_decode(old_text))
mem_purge(k, now)
if live then return 1 end
return 0
