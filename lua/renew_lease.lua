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
local bad_actor = check_actor(actor)
if bad_actor then return bad_actor end
if not is_id(id) or not key_ends(ik, ":i:" .. id) then
  return fail("INVALID", "malformed intent id", {field = "intent_id"})
end
if duration == nil or duration ~= math.floor(duration) or duration < 100 or duration > 86400000 then
  return fail("INVALID", "duration must be from 0.1 s to 24 h", {field = "duration_seconds"})
end
local l = lease_by_id(lk, lease_id)
if l == nil then
  return fail("NOT_FOUND", "intent " .. id .. " has no current lease " .. tostring(lease_id),
    {resource = "lease", id = lease_id})
end
if l.agent_id ~= actor then return lease_conflict(l, "lease " .. lease_id .. " is not yours") end
local now = now_us()
if l.status == "active" and not lease_live(l, now) then return lease_expired_error(l) end
if l.status ~= "active" then return lease_conflict(l, "lease " .. lease_id .. " is " .. l.status) end

l.expires_us = int(now + duration * 1000)
rcall("HSET", lk, l.scope, lease_text(l))
rcall("ZADD", dk, tonumber(l.expires_us), id .. "\t" .. l.scope .. "\t" .. l.id)
emit(ik, ek, bk, id, "lease_renewed", actor,
  '{"lease_id":"' .. l.id .. '","scope":"' .. l.scope .. '","fencing_token":' .. int(l.fence)
  .. ',"expires_at":"' .. iso_time(tonumber(l.expires_us)) .. '"}', now)
return lease_reply(l)
