--[[
release_lease: end a lease early, by its holder only.

Invariants:
  - only the holder releases, only a live lease: an expired lease cannot be released as
    if it had been live (LEASE_EXPIRED); releasing a released lease again returns it
    unchanged (a retry after a lost reply is safe)
  - the release, its history entry and lease_released are written together

KEYS:
  [1] intent   hash   {ns:p}:i:<id>
  [2] leases   hash   {ns:p}:l:<id>
  [3] history  stream {ns:p}:lh:<id>
  [4] events   stream {ns:p}:e:<id>
  [5] bus      stream {ns:p}:bus
  [6] due      zset   {ns:p}:due:lease

ARGV:
  [1] id        the intent id
  [2] lease_id  the lease
  [3] actor     the agent releasing (must be the holder)

Returns: the lease as JSON (includes/leases.lua)
Errors: INVALID, NOT_FOUND, LEASE_CONFLICT, LEASE_EXPIRED
Events: lease_released
]]
-- @include "fail"
-- @include "validate"
-- @include "leases"

local ik, lk, hk, ek, bk, dk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, lease_id, actor = ARGV[1], ARGV[2], ARGV[3]
local l, err = lease_open(ik, lk, id, lease_id, actor)
if l == nil then return err end
if l.agent_id == actor and l.status == "released" then return lease_reply(l) end
local now = now_us()
local not_held = lease_check_held(l, actor, now)
if not_held then return not_held end
return lease_end(lk, hk, dk, ik, ek, bk, id, l, "released", actor, now)
