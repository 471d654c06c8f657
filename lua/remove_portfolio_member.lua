--[[
remove_portfolio_member: take an intent out of a portfolio, in the portfolio's slot (step 1 of 2).

Invariants:
  - an intent that is not a member is NOT_FOUND, a completed or abandoned portfolio is
    CLOSED; each changes nothing
  - the member leaves the roster, the priority index and the counts together (the counts
    lose the status last applied for it), and the primary when it was the primary
  - removed_from_portfolio goes to the portfolio's log and, with m=<intent id>, to the
    partition bus (the daemon's repair entry); its seq orders step 2 (link_portfolio)
    after any earlier add, so a late step 2 of an add cannot undo this removal
  - a threshold the removal makes reached completes the portfolio here

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
  [3] actor      who removes it
  [4] token      "" to remove the member whatever its membership, or the token of the
                 membership to remove (an undo removes only the membership it undoes)

Returns: {the membership token (the event's seq), the portfolio's new version}
Errors: INVALID, NOT_FOUND, CLOSED
Events: removed_from_portfolio, portfolio_status_changed
]]
-- @include "fail"
-- @include "now_us"
-- @include "limits"
-- @include "validate"
-- @include "portfolio"

local rcall = redis.call
local rk, rok, mk, ek, bk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local pid, iid, actor, expected = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local bad = check_actor(actor)
if bad then return bad end
if not is_id(iid) then
  return fail("INVALID", "malformed intent id", {field = "intent_id"})
end
local cur, err = open_roster(rk, rok, mk, ek, pid, {"primary", "version"})
if cur == nil then return err end
local ix, ix_err = pf_indexes(6)
if ix == nil then return ix_err end
local entry = roster_decode(rcall("HGET", rok, iid))
if entry == nil or (expected ~= "" and tostring(entry.token) ~= expected) then
  return fail("NOT_FOUND", "intent " .. iid .. " is not a member of portfolio " .. pid,
    {id = iid, resource = "portfolio_member"})
end

local at = now_us()
local pversion = tonumber(cur[3]) + 1
local _, token = pf_emit(rk, ek, bk, pid, "removed_from_portfolio", actor,
  '{"intent_id":"' .. iid .. '","role":"' .. entry.role .. '"}', at, iid)
rcall("HDEL", rok, iid)
rcall("ZREM", mk, iid)
rcall("HINCRBY", rk, "total", -1)
rcall("HINCRBY", rk, "c:" .. entry.status, -1)
if cur[2] == iid then rcall("HDEL", rk, "primary") end
rcall("HSET", rk, "version", pversion, "updated_us", int(at))
pf_settle(rk, ek, bk, ix, pid, actor, at)
return {token, pversion}
