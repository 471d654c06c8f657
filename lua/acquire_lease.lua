--[[
acquire_lease: grant an agent a lease on a scope of an intent, with a fencing token.

Invariants:
  - at most one live lease per intent and scope; liveness is decided here against TIME,
    so an expired lease stops counting the microsecond it expires (its lease_expired is
    recorded here first if the daemon has not yet recorded it, exactly once either way)
  - the fencing token is the scope's previous token + 1: it only ever increases
  - a retried acquire with the same lease id returns that lease (a lost reply is safe);
    any other acquire while a lease is live is LEASE_CONFLICT, also for the holder
    itself (two replicas sharing an agent id must not both hold the scope)
  - closed intents take no leases; leases do not change the intent's version

KEYS:
  [1] intent   hash   {ns:p}:i:<id>
  [2] leases   hash   {ns:p}:l:<id>
  [3] history  stream {ns:p}:lh:<id>
  [4] events   stream {ns:p}:e:<id>
  [5] bus      stream {ns:p}:bus
  [6] due      zset   {ns:p}:due:lease

ARGV:
  [1] id        the intent id
  [2] scope     dotted scope ("content.draft"), each part of A-Z a-z 0-9 _ -
  [3] lease_id  the new lease's id (a UUID chosen by the client)
  [4] duration  milliseconds, 100 to 86400000
  [5] actor     the agent that will hold the lease

Returns: the lease as JSON (includes/leases.lua)
Errors: INVALID, NOT_FOUND, CLOSED, LEASE_CONFLICT, TOO_LARGE
Events: lease_acquired, lease_expired
]]
-- @include "fail"
-- @include "now_us"
-- @include "terminal"
-- @include "open_intent"
-- @include "leases"

local rcall = redis.call
local ik, lk, hk, ek, bk, dk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, scope, lease_id, duration, actor = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local bad_actor = check_actor(actor)
if bad_actor then return bad_actor end
if scope_tokens(scope) == nil then
  return fail("INVALID", "scope must be 1-128 characters: dot-separated parts of A-Z a-z 0-9 _ -",
    {field = "scope"})
end
if not is_id(lease_id) then return fail("INVALID", "malformed lease id", {field = "lease_id"}) end
if duration == nil or duration ~= math.floor(duration) or duration < 100 or duration > 86400000 then
  return fail("INVALID", "duration must be from 0.1 s to 24 h", {field = "duration_seconds"})
end
local cur, err = open_intent(ik, id, {"status"})
if cur == nil then return err end
if TERMINAL[cur[2]] then
  return fail("CLOSED", "intent " .. id .. " is " .. cur[2] .. " and takes no leases",
    {status = cur[2]})
end

local now = now_us()
local held = lease_read(lk, scope)
if held ~= nil and held.id == lease_id then
  if held.agent_id ~= actor then return lease_conflict(held, "lease " .. lease_id .. " is not yours") end
  return lease_reply(held)
end
if lease_live(held, now) then
  return lease_conflict(held, "scope " .. scope .. " of intent " .. id .. " is leased by "
    .. held.agent_id .. " until " .. iso_time(tonumber(held.expires_us)))
end
if held == nil and rcall("HLEN", lk) >= 2 * LEASE_SCOPES then
  return fail("TOO_LARGE", "an intent has at most " .. LEASE_SCOPES .. " leased scopes",
    {field = "scope", limit = LEASE_SCOPES})
end

if held ~= nil then
  if held.status == "active" then
    lease_end(lk, hk, dk, ik, ek, bk, id, held, "expired", "oibus", now)
  end
  rcall("HDEL", lk, "@" .. held.id)
end
local expires = now + duration * 1000
local lease = {id = lease_id, agent_id = actor, scope = scope, status = "active",
  fence = (held and held.fence or 0) + 1, acquired_us = int(now), expires_us = int(expires),
  prev = held and held.id or nil}
local text = lease_text(lease)
rcall("HSET", lk, scope, text, "@" .. lease_id, scope)
-- the score as the text it already is: no number to parse and format again
rcall("ZADD", dk, lease.expires_us, id .. "\t" .. scope .. "\t" .. lease_id)
emit(ik, ek, bk, id, "lease_acquired", actor,
  '{"lease_id":"' .. lease_id .. '","scope":"' .. scope .. '","agent_id":' .. cjson.encode(actor)
  .. ',"fencing_token":' .. int(lease.fence) .. ',"expires_at":"' .. iso_time(expires) .. '"}', now)
return text  -- lease_reply(lease), already built
