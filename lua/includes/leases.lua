-- @include "fail"
-- @include "now_us"
-- @include "iso_time"
-- @include "emit"
-- @include "validate"
-- Leases (RFC-0003). One hash per intent, {ns:p}:l:<id>:
--   <scope>     -> the scope's latest lease (any status) as JSON text; its "fence" is the
--                  scope's fencing token, so the next lease on the scope continues from it
--   @<lease id> -> <scope>, for the latest lease of each scope only (lookup by id)
-- Times are kept as strings of microseconds: cjson would round such numbers.

local LEASE_SCOPE_TOKENS = 16
local LEASE_SCOPES = 64

-- scope_tokens(scope): {"content", "draft"} for "content.draft", or nil if malformed
local function scope_tokens(scope)
  if type(scope) ~= "string" or #scope < 1 or #scope > 128 then return nil end
  local out = {}
  for token in string.gmatch(scope .. ".", "([^.]*)%.") do
    if not string.find(token, "^[%w_%-]+$") or #out >= LEASE_SCOPE_TOKENS then return nil end
    out[#out + 1] = token
  end
  return out
end

local function lease_text(l)
  return '{"id":"' .. l.id .. '","agent_id":' .. cjson.encode(l.agent_id) .. ',"scope":"'
    .. l.scope .. '","status":"' .. l.status .. '","fence":' .. int(l.fence)
    .. ',"acquired_us":"' .. l.acquired_us .. '","expires_us":"' .. l.expires_us
    .. '","ended_us":"' .. (l.ended_us or "") .. '"'
    .. (l.prev and (',"prev":"' .. l.prev .. '"') or "") .. '}'
end

local function lease_read(lk, scope)
  local raw = redis.call("HGET", lk, scope)
  if not raw then return nil end
  return cjson.decode(raw)
end

-- live(l, now): held and not yet past its expiry (the script's clock decides, not the
-- daemon's sweep: a lease is dead the microsecond it expires)
local function lease_live(l, now)
  return l ~= nil and l.status == "active" and tonumber(l.expires_us) > now
end

-- lease_end(...): close a lease as released, revoked or expired: store it, add it to the
-- history stream, drop it from the expiry schedule, append the event. Only called on an
-- active lease, and the status change is what makes a second call impossible. Returns
-- the lease's new text (what lease_reply would build again).
local function lease_end(lk, hk, dk, ik, ek, bk, id, l, status, actor, at, extra)
  l.status = status
  l.ended_us = int(at)
  local text = lease_text(l)
  redis.call("HSET", lk, l.scope, text)
  redis.call("XADD", hk, "MAXLEN", "~", 1000, "*", "l", text)  -- history is bounded
  redis.call("ZREM", dk, id .. "\t" .. l.scope .. "\t" .. l.id)
  emit(ik, ek, bk, id, "lease_" .. status, actor,
    '{"lease_id":"' .. l.id .. '","scope":"' .. l.scope .. '","agent_id":'
    .. cjson.encode(l.agent_id) .. ',"fencing_token":' .. int(l.fence) .. (extra or "") .. "}", at)
  return text
end

-- the reply every lease script shares: the lease as JSON text
local function lease_reply(l)
  return lease_text(l)
end

local function lease_conflict(l, message)
  return fail("LEASE_CONFLICT", message, {holder = l.agent_id, scope = l.scope,
    expires_at = iso_time(tonumber(l.expires_us))})
end

local function lease_expired_error(l)
  return fail("LEASE_EXPIRED", "lease " .. l.id .. " on " .. l.scope .. " expired at "
    .. iso_time(tonumber(l.expires_us)), {holder = l.agent_id, scope = l.scope,
    expires_at = iso_time(tonumber(l.expires_us))})
end

-- lease_by_id(lk, lease_id): the lease if it is its scope's latest, else nil
local function lease_by_id(lk, lease_id)
  local scope = redis.call("HGET", lk, "@" .. lease_id)
  if not scope then return nil end
  local l = lease_read(lk, scope)
  if l == nil or l.id ~= lease_id then return nil end
  return l
end

-- lease_open(ik, lk, id, lease_id, actor): the current lease named by lease_id, or nil
-- and the error reply (bad actor or intent id, or no such current lease). What renew,
-- release and revoke check before anything else.
local function lease_open(ik, lk, id, lease_id, actor)
  local bad_actor = check_actor(actor)
  if bad_actor then return nil, bad_actor end
  if not is_id(id) or not key_ends(ik, ":i:" .. id) then
    return nil, fail("INVALID", "malformed intent id", {field = "intent_id"})
  end
  local l = lease_by_id(lk, lease_id)
  if l ~= nil then return l end
  -- superseded: a later lease of the scope names it as its predecessor (bounded: an
  -- intent holds at most LEASE_SCOPES scopes, and this is the error path)
  local flat = redis.call("HGETALL", lk)
  for n = 1, #flat, 2 do
    if string.sub(flat[n], 1, 1) ~= "@" then
      local later = cjson.decode(flat[n + 1])
      if later.prev == lease_id then
        return nil, fail("LEASE_EXPIRED", "lease " .. lease_id .. " on " .. later.scope
          .. " is over: it was superseded by lease " .. later.id .. " of " .. later.agent_id,
          {holder = later.agent_id, scope = later.scope,
           expires_at = iso_time(tonumber(later.expires_us))})
      end
    end
  end
  return nil, fail("NOT_FOUND", "intent " .. id .. " has no current lease "
    .. tostring(lease_id), {resource = "lease", id = lease_id})
end

-- lease_check_held(l, actor, now): nil when l is the actor's live lease, else the error
-- reply: not the holder, expired by the server's clock, or already ended
local function lease_check_held(l, actor, now)
  if l.agent_id ~= actor then return lease_conflict(l, "lease " .. l.id .. " is not yours") end
  if (l.status == "active" and not lease_live(l, now)) or l.status == "expired" then
    return lease_expired_error(l)
  end
  if l.status ~= "active" then return lease_conflict(l, "lease " .. l.id .. " is " .. l.status) end
  return nil
end
