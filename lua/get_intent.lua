--[[
get_intent: read an intent and its state at one instant (read-only).

Invariants:
  - the intent hash and the state hash are read in one script, so the state always
    belongs to the version beside it

KEYS:
  [1] intent  hash  {ns:p}:i:<id>
  [2] state   hash  {ns:p}:s:<id>

ARGV: (none)

Returns: the intent as JSON (includes/snapshot.lua), or nil when it does not exist
Errors: (none)
Events: (none)
]]
-- @include "snapshot"

return snapshot(KEYS[1], KEYS[2])
