--[[
expire_lease: record that a lease ran out (the daemon's sweep calls this for every due
entry; acquire_lease does the same inline).

Invariants:
  - lease_expired is recorded once per lease: only an active lease past its expiry by the
    server's clock is closed, and closing it changes its status, so every later call for
    it is a no-op
  - a due entry that no longer names a current active lease is removed

KEYS:
  [1] intent   hash   {ns:p}:i:<id>
  [2] leases   hash   {ns:p}:l:<id>
  [3] history  stream {ns:p}:lh:<id>
  [4] events   stream {ns:p}:e:<id>
  [5] bus      stream {ns:p}:bus
  [6] due      zset   {ns:p}:due:lease

ARGV:
  [1] id        the intent id
  [2] scope     the lease's scope
  [3] lease_id  the lease

Returns: 1 when this call recorded the expiry, 0 otherwise
Errors: INVALID, LEASE_CONFLICT
Events: lease_expired
]]
-- @include "fail"
-- @include "validate"
-- @include "leases"

local ik, lk, hk, ek, bk, dk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, scope, lease_id = ARGV[1], ARGV[2], ARGV[3]
if not is_id(id) or not key_ends(ik, ":i:" .. id) or scope_tokens(scope) == nil then
  return fail("INVALID", "malformed intent id or scope", {field = "intent_id"})
end
local l = lease_read(lk, scope)
local now = now_us()
if l == nil or l.id ~= lease_id or l.status ~= "active" then
  redis.call("ZREM", dk, id .. "\t" .. scope .. "\t" .. lease_id)
  return 0
end
if lease_live(l, now) then return 0 end
lease_end(lk, hk, dk, ik, ek, bk, id, l, "expired", "oibus", now)
return 1
