--[[
create_delegation: record a delegation of authority from a delegator to a delegate (RFC-0003).

Invariants:
  - a delegation names a delegator and a different delegate, a scope of intents and/or
    actions, constraints (kept verbatim) and an optional expiry in the future by the
    server's clock; it is in force from now until it expires or is revoked
  - an id already used is EXISTS and changes nothing
  - the record and its delegation_created event (in the namespace's delegation log, not an
    intent's) are written together

KEYS:
  [1] delegations  hash   {ns}:dg
  [2] events       stream {ns}:dge

ARGV:
  [1] delegation_id  the new contract's id (a UUID chosen by the client)
  [2] delegator      who delegates (at most 256 bytes)
  [3] delegate       who receives the authority (at most 256 bytes)
  [4] scope          JSON object {"intents": [ids], "actions": [names]}
  [5] constraints    JSON object
  [6] expires_us     expiry in µs since the epoch (below GOV_TIME_MAX), or "" for none
  [7] actor          who records it

Returns: {now (µs), the delegation as JSON text}
Errors: INVALID, TOO_LARGE, EXISTS
Events: delegation_created
]]
-- @include "fail"
-- @include "now_us"
-- @include "iso_time"
-- @include "limits"
-- @include "validate"
-- @include "gov_records"
-- @include "gov_delegation"

local rcall = redis.call
local dk, ek = KEYS[1], KEYS[2]
local dg_id, delegator, delegate, scope, constraints, expires, actor =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local bad = check_actor(actor)
if bad then return bad end
if not key_ends(dk, "}:dg") or not key_ends(ek, "}:dge") then
  return fail("INVALID", "delegation keys are not a namespace's delegation keys",
    {field = "keys"})
end
if not is_id(dg_id) then
  return fail("INVALID", "malformed delegation id", {field = "delegation_id"})
end
for _, f in ipairs({{delegator, "delegator"}, {delegate, "delegate"}}) do
  if not is_text(f[1], 256) then
    return fail("INVALID", f[2] .. " must be a non-empty string of at most 256 bytes",
      {field = f[2]})
  end
end
if delegator == delegate then
  return fail("INVALID", "an agent cannot delegate to itself", {field = "delegate"})
end
bad = gov_size(#scope + #constraints, "constraints") or gov_scope(scope)
  or gov_json(constraints, "object", "constraints")
if bad then return bad end
local now = now_us()
if expires ~= "" and (not string.find(expires, "^%d+$") or #expires > 16
    or tonumber(expires) <= now or tonumber(expires) >= GOV_TIME_MAX) then
  return fail("INVALID", "expires_at must be in the future (and before 2255)",
    {field = "expires_at"})
end
if rcall("HEXISTS", dk, dg_id) == 1 then
  return fail("EXISTS", "delegation " .. dg_id .. " already exists", {id = dg_id})
end

local record = '{"id":"' .. dg_id .. '","delegator":' .. cjson.encode(delegator)
  .. ',"delegate":' .. cjson.encode(delegate) .. ',"scope":' .. scope .. ',"constraints":'
  .. constraints .. ',"expires_us":"' .. expires .. '","created_by":' .. cjson.encode(actor)
  .. ',"created_us":"' .. int(now) .. '",' .. gov_tail("active")
rcall("HSET", dk, dg_id, record)
local expires_at = "null"
if expires ~= "" then expires_at = '"' .. iso_time(tonumber(expires)) .. '"' end
gov_delegation_event(ek, "delegation_created", actor, dg_id,
  '{"delegation_id":"' .. dg_id .. '","delegator":' .. cjson.encode(delegator) .. ',"delegate":'
  .. cjson.encode(delegate) .. ',"scope":' .. scope .. ',"expires_at":' .. expires_at .. "}", now)
return {int(now), record}
