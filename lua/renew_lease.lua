--[[
renew_lease: extend a live lease, by its holder only.

Invariants:
  - only the lease's holder renews it, only while it is live by the server's clock; an
    expired lease stays expired (LEASE_EXPIRED) so it can never turn into two holders
  - the fencing token does not change: it is still the same lease

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
  [3] duration  milliseconds from now, 100 to 86400000
  [4] actor     the agent renewing (must be the holder)

Returns: the lease as JSON (includes/leases.lua)
Errors: INVALID, NOT_FOUND, LEASE_CONFLICT, LEASE_EXPIRED
Events: lease_renewed
]]
-- @include "fail"
-- @include "validate"
-- @include "leases"

local rcall = redis.call
local ik, lk, hk, ek, bk, dk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, lease_id, duration, actor = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
if duration == nil or duration ~= math.floor(duration) or duration < 100 or duration > 86400000 then
  return fail("INVALID", "duration must be from 0.1 s to 24 h", {field = "duration_seconds"})
end
local l, err = lease_open(ik, lk, id, lease_id, actor)
if l == nil then return err end
local now = now_us()
local not_held = lease_check_held(l, actor, now)
if not_held then return not_held end

local expires = now + duration * 1000
l.expires_us = int(expires)
local text = lease_text(l)
rcall("HSET", lk, l.scope, text)
rcall("ZADD", dk, l.expires_us, id .. "\t" .. l.scope .. "\t" .. l.id)
emit(ik, ek, bk, id, "lease_renewed", actor,
  '{"lease_id":"' .. l.id .. '","scope":"' .. l.scope .. '","fencing_token":' .. int(l.fence)
  .. ',"expires_at":"' .. iso_time(expires) .. '"}', now)
return text  -- lease_reply(l), already built
