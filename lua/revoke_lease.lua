--[[
revoke_lease: end someone's lease by governance (RFC-0003); who may call it is the
deployment's access control (Redis ACLs), the actor and reason are recorded.

Invariants:
  - a live lease becomes revoked with its history entry and lease_revoked, together
  - a lease already past its expiry is recorded as expired instead (once), not revoked
  - revoking an ended lease returns it unchanged

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
  [3] reason    why (required, at most 64 KiB)
  [4] actor     who revokes

Returns: the lease as JSON (includes/leases.lua)
Errors: INVALID, NOT_FOUND, LEASE_CONFLICT, LEASE_EXPIRED
Events: lease_revoked, lease_expired
]]
-- @include "fail"
-- @include "limits"
-- @include "validate"
-- @include "leases"

local ik, lk, hk, ek, bk, dk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, lease_id, reason, actor = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if not is_text(reason, LIMIT_TEXT_BYTES) then
  return fail("INVALID", "a revocation needs a reason", {field = "reason"})
end
local l, err = lease_open(ik, lk, id, lease_id, actor)
if l == nil then return err end
if l.status ~= "active" then return lease_reply(l) end
local now = now_us()
if not lease_live(l, now) then
  lease_end(lk, hk, dk, ik, ek, bk, id, l, "expired", "oibus", now)
else
  lease_end(lk, hk, dk, ik, ek, bk, id, l, "revoked", actor, now,
    ',"reason":' .. cjson.encode(reason))
end
return lease_reply(l)
