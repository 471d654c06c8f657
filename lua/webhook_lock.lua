--[[
webhook_lock: take, keep or give back the lock on one subscription's delivery queue.

Invariants:
  - at most one consumer holds a queue's lock; it lapses by itself (PX) when its holder
    stops renewing it, which is how a dead daemon's queue is taken over
  - only the holder renews or releases it

KEYS:
  [1] lock  string  {ns:w:<subscription id>}:lk

ARGV:
  [1] op     hold (take or renew) or release
  [2] owner  the consumer name
  [3] ttl    lifetime in ms (hold)

Returns: 1 when held (hold) or released (release), 0 when another consumer holds it
Errors: INVALID
Events: (none)
]]
-- @include "fail"
-- @include "validate"

local rcall = redis.call
local lock = KEYS[1]
local op, owner, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])

if not is_text(owner, 256) then return fail("INVALID", "malformed owner", {field = "consumer"}) end
if not key_ends(lock, ":lk") then return fail("INVALID", "not a lock key", {field = "lock"}) end
local holder = rcall("GET", lock)
if op == "hold" then
  if not ttl or ttl < 1 or ttl % 1 ~= 0 then return fail("INVALID", "malformed ttl", {field = "ttl"}) end
  if holder and holder ~= owner then return 0 end
  rcall("SET", lock, owner, "PX", ttl)
  return 1
elseif op == "release" then
  if holder ~= owner then return 0 end
  rcall("DEL", lock)
  return 1
end
return fail("INVALID", "unknown op", {field = "op"})
