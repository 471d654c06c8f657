--[[
revoke_delegation: end a delegation contract before its expiry (RFC-0003 governance).

Invariants:
  - a delegation in force becomes revoked, with the revoker (the actor), reason and time
    added to its record and delegation_revoked in the delegation log, together
  - a delegation already revoked, or past its expiry by the server's clock, is returned
    unchanged and nothing is written (a retried revoke is harmless)
  - who may call it is the deployment's access control (Redis ACLs)

KEYS:
  [1] delegations  hash   {ns}:dg
  [2] events       stream {ns}:dge

ARGV:
  [1] delegation_id  the contract
  [2] reason         why (1 byte to 64 KiB)
  [3] actor          who revokes

Returns: {now (µs), the delegation as JSON text}
Errors: INVALID, NOT_FOUND
Events: delegation_revoked
]]
-- @include "fail"
-- @include "now_us"
-- @include "limits"
-- @include "validate"
-- @include "gov_records"
-- @include "gov_delegation"

local rcall = redis.call
local dk, ek = KEYS[1], KEYS[2]
local dg_id, reason, actor = ARGV[1], ARGV[2], ARGV[3]
local bad = check_actor(actor)
if bad then return bad end
if not key_ends(dk, "}:dg") or not key_ends(ek, "}:dge") then
  return fail("INVALID", "delegation keys are not a namespace's delegation keys",
    {field = "keys"})
end
if not is_id(dg_id) then
  return fail("INVALID", "malformed delegation id", {field = "delegation_id"})
end
if not is_text(reason, LIMIT_TEXT_BYTES) then
  return fail("INVALID", "a revocation needs a reason of at most " .. LIMIT_TEXT_BYTES
    .. " bytes", {field = "reason"})
end
local record = rcall("HGET", dk, dg_id)
if not record then
  return fail("NOT_FOUND", "delegation " .. dg_id .. " does not exist",
    {resource = "delegation", id = dg_id})
end
local now = now_us()
if not gov_is(record, "active") then return {int(now), record} end
local expires = cjson.decode(record).expires_us
if expires ~= "" and tonumber(expires) <= now then return {int(now), record} end

record = gov_close(record, "active", '"status":"revoked","revoked_by":' .. cjson.encode(actor)
  .. ',"reason":' .. cjson.encode(reason) .. ',"revoked_us":"' .. int(now) .. '"}')
rcall("HSET", dk, dg_id, record)
gov_delegation_event(ek, "delegation_revoked", actor, dg_id,
  '{"delegation_id":"' .. dg_id .. '","reason":' .. cjson.encode(reason) .. "}", now)
return {int(now), record}
