--[[
get_memory: read one entry of an agent's memory by the server's clock (read-only).

Invariants:
  - nothing is written
  - an entry whose expiry has passed by the server clock reads as absent

KEYS:
  [1] meta    hash  {ns:m:<agent>}:meta
  [2] values  hash  {ns:m:<agent>}:val
  [3] expiry  zset  {ns:m:<agent>}:exp

ARGV:
  [1] agent   the agent id (the keys must be its memory keys)
  [2] key     the entry's key

Returns: {key, metadata JSON, value JSON}, or {} when absent or expired
Errors: INVALID, TOO_LARGE
Events: (none)
]]
-- @include "memory"

local k = KEYS
local agent, key = ARGV[1], ARGV[2]
local bad = mem_check_keys(k, agent) or mem_key(key)
if bad then return bad end
if mem_expired(k[3], key, now_us()) then return {} end
return mem_rows(k, {key})
