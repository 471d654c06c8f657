--[[
get_intents: read several intents of one partition, each at one instant (read-only): a
listing page's share of a partition in one call instead of one call per intent.

Invariants:
  - each intent's hash and state hash are read together (includes/snapshot.lua), so every
    state belongs to the version beside it; the whole reply is one instant of the partition
  - bounded: at most MAX_IDS intents per call (bus/limits.py PAGE_MAX, the largest page);
    no keys, an odd number of keys or more than MAX_IDS intents is INVALID
  - nothing is written, so the reader role may call it

KEYS:
  [1+] pairs  hash pairs, two keys per intent in the order wanted: {ns:p}:i:<id>, {ns:p}:s:<id>

ARGV: (none)

Returns: one reply per intent, in KEYS order: its snapshot (JSON, includes/snapshot.lua),
  or nil when it does not exist
Errors: INVALID
Events: (none)
]]
-- @include "fail"
-- @include "snapshot"

local MAX_IDS = 1000
local n = #KEYS
if n == 0 or n % 2 == 1 or n > 2 * MAX_IDS then
  return fail("INVALID", "get_intents reads 1 to " .. MAX_IDS .. " intents: (intent, state) key pairs",
    {field = "intent_ids"})
end
local out = {}
for k = 1, n / 2 do
  out[k] = snapshot(KEYS[2 * k - 1], KEYS[2 * k])
end
return out
