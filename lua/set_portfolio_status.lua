--[[
set_portfolio_status: move a portfolio through its lifecycle (active -> completed | abandoned).

Invariants:
  - only active moves, to completed or abandoned; those are terminal; anything else is
    TRANSITION and writes nothing; an unknown status is INVALID
  - completing by hand is the caller's decision: the governance policy decides when the
    portfolio completes by itself (sync_portfolio), not whether a person may close it
  - the status, its index entry, the bumped version and portfolio_status_changed are
    written together

KEYS:
  [1] portfolio  hash   {ns:p}:pf:<pid>
  [2] events     stream {ns:p}:pe:<pid>
  [3] bus        stream {ns:p}:bus
  [4] ix_active     zset   {ns:p}:x:pf:active
  [5] ix_completed  zset   {ns:p}:x:pf:completed
  [6] ix_abandoned  zset   {ns:p}:x:pf:abandoned

ARGV:
  [1] id      the portfolio id
  [2] status  the new status
  [3] reason  free text for the event ("" for none)
  [4] actor   who changes it

Returns: the record as a flat HGETALL array
Errors: INVALID, TOO_LARGE, NOT_FOUND, TRANSITION
Events: portfolio_status_changed
]]
-- @include "fail"
-- @include "now_us"
-- @include "limits"
-- @include "validate"
-- @include "portfolio"

local rcall = redis.call
local rk, ek, bk = KEYS[1], KEYS[2], KEYS[3]
local pid, to, reason, actor = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local bad = check_actor(actor)
if bad then return bad end
if PORTFOLIO_TRANSITIONS[to] == nil then
  return fail("INVALID", "unknown portfolio status " .. tostring(to) .. "; one of "
    .. table.concat(PORTFOLIO_STATUSES, ", "), {field = "status"})
end
local bad_reason = check_note(reason, "reason", LIMIT_TEXT_BYTES)
if bad_reason then return bad_reason end
local ix, ix_err = pf_indexes(4)
if ix == nil then return ix_err end
local cur, err = open_portfolio(rk, pid, {})
if cur == nil then return err end
if not key_ends(ek, ":pe:" .. pid) then
  return fail("INVALID", "events key is not this portfolio's", {field = "portfolio_id"})
end
local from = cur[1]
if not PORTFOLIO_TRANSITIONS[from][to] then
  return fail("TRANSITION", "cannot move portfolio " .. pid .. " from " .. from .. " to " .. to,
    {from_status = from, to_status = to})
end
local at = now_us()
local version = pf_move(rk, ix, pid, from, to, at)
local payload = '{"from":"' .. from .. '","to":"' .. to .. '","version":' .. version
if reason ~= "" then payload = payload .. ',"reason":' .. cjson.encode(reason) end
pf_emit(rk, ek, bk, pid, "portfolio_status_changed", actor, payload .. "}", at)
return rcall("HGETALL", rk)
