--[[
link_portfolio: record (or drop) a portfolio on its member intent, in the intent's slot (step 2 of 2).

Invariants:
  - the intent's field pf (a JSON array of portfolio ids, absent for none) is what every
    status-changing script reports with its moves; only this script writes it, together
    with pfs, a JSON object portfolio id -> the token of the last membership change
    applied (positive for an add, negative for a removal)
  - a change applies only when its token is newer than the stored one, so steps arriving
    late, twice or out of order (a client and a daemon repairing from the bus) leave the
    outcome of the newest portfolio-side change; a stale one writes nothing
  - an intent links to at most LIMIT_PORTFOLIOS_PER_INTENT portfolios (TOO_LARGE: the
    client then undoes step 1); tombstones beyond LIMIT_PORTFOLIO_LINKS are dropped
  - the intent's version does not change (membership is not state); an applied add, or
    an applied removal of a link the intent had, appends added_to_portfolio or
    removed_from_portfolio to the intent's log

KEYS:
  [1] intent  hash   {ns:p}:i:<id>
  [2] events  stream {ns:p}:e:<id>
  [3] bus     stream {ns:p}:bus

ARGV:
  [1] id            the intent id
  [2] portfolio_id  the portfolio
  [3] token         the membership token from step 1 (a positive integer)
  [4] op            add or remove
  [5] role          the member's role ("" for a removal)
  [6] actor         who changes it

Returns: {1 if applied else 0, the intent's status, its version}: the move to sync
Errors: INVALID, NOT_FOUND, TOO_LARGE
Events: added_to_portfolio, removed_from_portfolio
]]
-- @include "fail"
-- @include "now_us"
-- @include "limits"
-- @include "validate"
-- @include "open_intent"
-- @include "emit"
-- @include "portfolio"

local rcall = redis.call
local ik, ek, bk = KEYS[1], KEYS[2], KEYS[3]
local id, pid, token, op, role, actor = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local bad = check_actor(actor)
if bad then return bad end
if not is_id(pid) then
  return fail("INVALID", "malformed portfolio id", {field = "portfolio_id"})
end
if not string.find(token, "^[1-9]%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?$") then
  return fail("INVALID", "token must be a positive integer", {field = "token"})
end
if op ~= "add" and op ~= "remove" then
  return fail("INVALID", "op must be add or remove", {field = "op"})
end
if (op == "add" and not PORTFOLIO_ROLES[role]) or (op == "remove" and role ~= "") then
  return fail("INVALID", "role must be primary, member or dependency for an add, empty for a removal",
    {field = "role"})
end
local cur, err = open_intent(ik, id, {"status", "pfs"})
if cur == nil then return err end
if not key_ends(ek, ":e:" .. id) then
  return fail("INVALID", "events key is not this intent's", {field = "intent_id"})
end
local links = {}
if cur[3] then
  local ok, decoded = pcall(cjson.decode, cur[3])
  if ok and type(decoded) == "table" then links = decoded end
end
local stored = tonumber(links[pid]) or 0
local n = tonumber(token)
if math.abs(stored) >= n then
  return {0, cur[2], tonumber(cur[1])}
end
local members, dead = {}, {}
for other, t in pairs(links) do
  if other ~= pid then
    if tonumber(t) > 0 then members[#members + 1] = other else dead[#dead + 1] = other end
  end
end
if op == "add" then
  if #members >= LIMIT_PORTFOLIOS_PER_INTENT then
    return fail("TOO_LARGE", "intent " .. id .. " is in " .. LIMIT_PORTFOLIOS_PER_INTENT
      .. " portfolios, the most it may be in",
      {field = "intent_id", limit = LIMIT_PORTFOLIOS_PER_INTENT})
  end
  links[pid] = n
  members[#members + 1] = pid
else
  links[pid] = -n
end
for k = 1, #dead - (LIMIT_PORTFOLIO_LINKS - #members - 1) do
  links[dead[k]] = nil  -- bounded by #dead
end

table.sort(members)
local pf = {}
for k = 1, #members do pf[k] = cjson.encode(members[k]) end
rcall("HSET", ik, "pfs", cjson.encode(links))
if #pf > 0 then
  rcall("HSET", ik, "pf", "[" .. table.concat(pf, ",") .. "]")
else
  rcall("HDEL", ik, "pf")
end
local payload = '{"portfolio_id":"' .. pid .. '"'
if op == "add" then
  emit(ik, ek, bk, id, "added_to_portfolio", actor, payload .. ',"role":"' .. role .. '"}', now_us())
elseif stored > 0 then  -- a removal of a link never made leaves only its tombstone
  emit(ik, ek, bk, id, "removed_from_portfolio", actor, payload .. '}', now_us())
end
return {1, cur[2], tonumber(cur[1])}
