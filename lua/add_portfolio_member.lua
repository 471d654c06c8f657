--[[
add_portfolio_member: record an intent as a member of a portfolio, in the portfolio's slot (step 1 of 2).

Invariants:
  - the portfolio decides membership: a member already present is EXISTS, a second
    primary is CONFLICT, a full roster (LIMIT_PORTFOLIO_MEMBERS) is TOO_LARGE, a completed
    or abandoned portfolio is CLOSED; each changes nothing
  - the member is counted under the status the caller read from the intent, at version 0
    (provisional: this slot cannot check it); the client then records the portfolio on
    the intent (link_portfolio, step 2), which returns the intent's current status and
    version, and syncs them: any real version is newer than 0, so a wrong or stale
    status from the caller, or a move made between the read and step 2, never lasts
  - added_to_portfolio goes to the portfolio's log and, with m=<intent id>, to the
    partition bus: the entry a daemon repairs from when step 2 never ran; its seq is the
    membership token step 2 orders by
  - an auto-completion threshold the new member makes reached completes the portfolio here

KEYS:
  [1] portfolio  hash   {ns:p}:pf:<pid>
  [2] roster     hash   {ns:p}:pr:<pid>
  [3] members    zset   {ns:p}:pm:<pid>
  [4] events     stream {ns:p}:pe:<pid>
  [5] bus        stream {ns:p}:bus
  [6] ix_active     zset   {ns:p}:x:pf:active
  [7] ix_completed  zset   {ns:p}:x:pf:completed
  [8] ix_abandoned  zset   {ns:p}:x:pf:abandoned

ARGV:
  [1] id         the portfolio id
  [2] intent_id  the member
  [3] role       primary, member or dependency
  [4] priority   an integer from -10^9 to 10^9
  [5] status     the member's status as the caller read it
  [6] actor      who adds it

Returns: {the membership token (the event's seq), the portfolio's new version, added µs}
Errors: INVALID, NOT_FOUND, CLOSED, EXISTS, CONFLICT, TOO_LARGE
Events: added_to_portfolio, portfolio_status_changed
]]
-- @include "fail"
-- @include "now_us"
-- @include "limits"
-- @include "validate"
-- @include "statuses"
-- @include "portfolio"

local rcall = redis.call
local rk, rok, mk, ek, bk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local pid, iid, role, priority, status, actor =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local bad = check_actor(actor)
if bad then return bad end
if not is_id(iid) then
  return fail("INVALID", "malformed intent id", {field = "intent_id"})
end
if not PORTFOLIO_ROLES[role] then
  return fail("INVALID", "role must be primary, member or dependency", {field = "role"})
end
if not (priority == "0" or string.find(priority, "^%-?[1-9]%d?%d?%d?%d?%d?%d?%d?%d?%d?$"))
    or math.abs(tonumber(priority)) > 1000000000 then
  return fail("INVALID", "priority must be an integer from -10^9 to 10^9", {field = "priority"})
end
if status_index(status) == nil then
  return fail("INVALID", "unknown member status " .. tostring(status), {field = "status"})
end
local cur, err = open_roster(rk, rok, mk, ek, pid, {"total", "primary", "version"})
if cur == nil then return err end
local ix, ix_err = pf_indexes(6)
if ix == nil then return ix_err end
if rcall("HEXISTS", rok, iid) == 1 then
  return fail("EXISTS", "intent " .. iid .. " is already a member of portfolio " .. pid,
    {id = iid, portfolio_id = pid})
end
if role == "primary" and cur[3] then
  return fail("CONFLICT", "portfolio " .. pid .. " already has a primary intent, " .. cur[3],
    {primary = cur[3], field = "role"})
end
if tonumber(cur[2]) >= LIMIT_PORTFOLIO_MEMBERS then
  return fail("TOO_LARGE", "portfolio " .. pid .. " has " .. LIMIT_PORTFOLIO_MEMBERS
    .. " members, the most it may have", {field = "intent_id", limit = LIMIT_PORTFOLIO_MEMBERS})
end

local at = now_us()
local pversion = tonumber(cur[4]) + 1
local _, token = pf_emit(rk, ek, bk, pid, "added_to_portfolio", actor,
  '{"intent_id":"' .. iid .. '","role":"' .. role .. '","priority":' .. priority .. '}', at, iid)
rcall("HSET", rok, iid, roster_encode({role = role, priority = tonumber(priority),
  status = status, version = 0, added = at, token = token}))
rcall("ZADD", mk, priority, iid)
rcall("HINCRBY", rk, "total", 1)
rcall("HINCRBY", rk, "c:" .. status, 1)
if role == "primary" then rcall("HSET", rk, "primary", iid) end
rcall("HSET", rk, "version", pversion, "updated_us", int(at))
pf_settle(rk, ek, bk, ix, pid, actor, at)
return {token, pversion, int(at)}
