--[[
sync_portfolio: apply member status moves to a portfolio's counts, idempotently, in the portfolio's slot.

Invariants:
  - a move applies only to a current member and only when its version is newer than the
    version last applied for that member: replays (the client's hook and a daemon reading
    the bus, in any order, any number of times) change nothing
  - the counts by status (c:<status>) always equal the roster's statuses: the aggregate
    is read from them, never by reading the members
  - a member reaching suspended_awaiting_input appends portfolio.member_suspended; one
    leaving it for active or blocked appends portfolio.member_resumed
  - every move is checked before the first write (a malformed one is INVALID, nothing
    applied); at most LIMIT_BATCH moves per call
  - an auto-completion threshold reached completes the portfolio here, once
  - an unknown portfolio applies nothing (portfolios are never deleted: such a move is
    stale, not an error worth failing the member's own change for)

KEYS:
  [1] portfolio  hash   {ns:p}:pf:<pid>
  [2] roster     hash   {ns:p}:pr:<pid>
  [3] events     stream {ns:p}:pe:<pid>
  [4] bus        stream {ns:p}:bus
  [5] ix_active     zset   {ns:p}:x:pf:active
  [6] ix_completed  zset   {ns:p}:x:pf:completed
  [7] ix_abandoned  zset   {ns:p}:x:pf:abandoned

ARGV:
  [1] id     the portfolio id
  [2] moves  JSON array of [intent id, status, version]
  [3] actor  who reports them

Returns: {how many moves applied, the portfolio's status}
Errors: INVALID, TOO_LARGE
Events: portfolio.member_suspended, portfolio.member_resumed, portfolio_status_changed
]]
-- @include "fail"
-- @include "now_us"
-- @include "limits"
-- @include "validate"
-- @include "statuses"
-- @include "portfolio"

local rcall = redis.call
local rk, rok, ek, bk = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local pid, moves_text, actor = ARGV[1], ARGV[2], ARGV[3]
local bad = check_actor(actor)
if bad then return bad end
if not is_id(pid) or not key_ends(rk, ":pf:" .. pid) or not key_ends(rok, ":pr:" .. pid)
    or not key_ends(ek, ":pe:" .. pid) then
  return fail("INVALID", "malformed portfolio id or keys", {field = "portfolio_id"})
end
local ix, ix_err = pf_indexes(5)
if ix == nil then return ix_err end
local ok, moves = pcall(cjson.decode, moves_text)
if not ok or type(moves) ~= "table" then
  return fail("INVALID", "moves must be a JSON array", {field = "moves"})
end
if #moves > LIMIT_BATCH then
  return fail("TOO_LARGE", "at most " .. LIMIT_BATCH .. " moves per call",
    {field = "moves", limit = LIMIT_BATCH, size = #moves})
end
for k = 1, #moves do
  local m = moves[k]
  if type(m) ~= "table" or not is_id(m[1]) or status_index(m[2]) == nil
      or type(m[3]) ~= "number" or m[3] < 1 or m[3] ~= math.floor(m[3]) then
    return fail("INVALID", "move " .. k .. " is not [intent id, status, version]", {field = "moves"})
  end
end
local status = rcall("HGET", rk, "status")
if not status then return {0, ""} end

local at = now_us()
local applied = 0
for k = 1, #moves do
  local iid, to, version = moves[k][1], moves[k][2], moves[k][3]
  local entry = roster_decode(rcall("HGET", rok, iid))
  if entry ~= nil and version > entry.version then
    local from = entry.status
    if from ~= to then
      rcall("HINCRBY", rk, "c:" .. from, -1)
      rcall("HINCRBY", rk, "c:" .. to, 1)
      local payload = '{"intent_id":"' .. iid .. '","from":"' .. from .. '","to":"' .. to
        .. '","version":' .. int(version) .. '}'
      if to == "suspended_awaiting_input" then
        pf_emit(rk, ek, bk, pid, "portfolio.member_suspended", actor, payload, at, iid)
      elseif from == "suspended_awaiting_input" and (to == "active" or to == "blocked") then
        pf_emit(rk, ek, bk, pid, "portfolio.member_resumed", actor, payload, at, iid)
      end
    end
    entry.status, entry.version = to, version
    rcall("HSET", rok, iid, roster_encode(entry))
    applied = applied + 1
  end
end
if applied > 0 then
  pf_settle(rk, ek, bk, ix, pid, actor, at)
  status = rcall("HGET", rk, "status")
end
return {applied, status}
