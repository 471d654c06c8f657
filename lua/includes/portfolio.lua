-- @include "fail"
-- @include "validate"
-- @include "now_us"
-- Portfolios (RFC-0004/0007): their lifecycle, the roster entry of a member, the
-- portfolio's own emit, and the auto-completion check that every script changing a
-- portfolio's counts runs last. Mirrors bus/portfolios.py; a test keeps the tables equal.
local PORTFOLIO_STATUSES = {"active", "completed", "abandoned"}
local PORTFOLIO_TRANSITIONS = {
  active = {completed = true, abandoned = true},
  completed = {},
  abandoned = {},
}
local PORTFOLIO_ROLES = {primary = true, member = true, dependency = true}

-- A roster entry (one field of {ns:p}:pr:<pid> per member intent) is tab-separated text:
-- role, priority, the member's status and version as last applied, added µs, and the
-- membership token (the seq of the portfolio event that added it).
local function roster_encode(m)
  return m.role .. "\t" .. int(m.priority) .. "\t" .. m.status .. "\t" .. int(m.version)
    .. "\t" .. int(m.added) .. "\t" .. int(m.token)
end

local function roster_decode(text)
  if not text then return nil end
  local role, priority, status, version, added, token =
    string.match(text, "^(%a+)\t(%-?%d+)\t([%a_]+)\t(%d+)\t(%d+)\t(%d+)$")
  if not role then return nil end
  return {role = role, priority = tonumber(priority), status = status,
    version = tonumber(version), added = tonumber(added), token = tonumber(token)}
end

-- pf_emit(rk, ek, bk, pid, etype, actor, payload, at, member): append one event to the
-- portfolio's log (seq kept in its record hash rk) and a pointer to the partition bus,
-- marked k=portfolio so a consumer never takes the portfolio id for an intent's; events
-- about one member also carry m=<intent id> (what the daemon's repair reads).
local function pf_emit(rk, ek, bk, pid, etype, actor, payload, at, member)
  local seq = redis.call("HINCRBY", rk, "seq", 1)
  local eid = redis.call("XADD", ek, "*", "s", seq, "t", etype, "a", actor,
    "p", payload, "at", int(at))
  if member then
    redis.call("XADD", bk, "*", "i", pid, "e", eid, "s", seq, "t", etype, "a", actor,
      "k", "portfolio", "m", member)
  else
    redis.call("XADD", bk, "*", "i", pid, "e", eid, "s", seq, "t", etype, "a", actor,
      "k", "portfolio")
  end
  return eid, seq
end

-- pf_indexes(first): the portfolio status indexes {ns:p}:x:pf:<status>, one per status in
-- the order of PORTFOLIO_STATUSES, from KEYS[first] on; nil and the error when they are
-- not. Every script that may change a portfolio's status receives them.
local function pf_indexes(first)
  local ix = {}
  for n = 1, #PORTFOLIO_STATUSES do
    local key = KEYS[first + n - 1]
    if key == nil or not key_ends(key, ":x:pf:" .. PORTFOLIO_STATUSES[n]) then
      return nil, fail("INVALID", "portfolio status index keys are missing or out of order",
        {field = "keys"})
    end
    ix[PORTFOLIO_STATUSES[n]] = key
  end
  return ix
end

-- pf_move(rk, ix, pid, from, to, at): the status change itself: record, version, index
-- entry. Returns the new version.
local function pf_move(rk, ix, pid, from, to, at)
  local r = redis.call("HMGET", rk, "version", "created_us")
  local member = string.format("%016.0f", tonumber(r[2])) .. ":" .. pid
  redis.call("ZREM", ix[from], member)
  redis.call("ZADD", ix[to], 0, member)
  local version = tonumber(r[1]) + 1
  redis.call("HSET", rk, "status", to, "version", version, "updated_us", int(at))
  return version
end

-- pf_settle(rk, ek, bk, ix, pid, actor, at): an active portfolio with an auto-completion
-- threshold (field thr: a percentage, 100 under require_all_completed) completes when
-- its completed members reach it (abandoned members leave the base when partial
-- completion is allowed). The status test and the change are in the caller's atomic
-- script, so however many members complete at once the portfolio completes once.
local function pf_settle(rk, ek, bk, ix, pid, actor, at)
  local r = redis.call("HMGET", rk, "status", "thr", "partial", "total", "c:completed",
    "c:abandoned")
  local thr = tonumber(r[2] or "0") or 0
  if r[1] ~= "active" or thr <= 0 then return false end
  local total, done = tonumber(r[4] or "0"), tonumber(r[5] or "0")
  local base = total
  if r[3] == "1" then base = total - tonumber(r[6] or "0") end
  if base <= 0 or done * 100 < thr * base then return false end
  local version = pf_move(rk, ix, pid, "active", "completed", at)
  pf_emit(rk, ek, bk, pid, "portfolio_status_changed", actor,
    '{"from":"active","to":"completed","version":' .. version
    .. ',"reason":"auto_complete","completed":' .. int(done) .. ',"total":' .. int(total) .. '}',
    at)
  return true
end

-- open_portfolio(rk, pid, fields): the portfolio's status followed by the named fields,
-- or nil and the error to return (malformed id, a key not this id's, no such portfolio).
local function open_portfolio(rk, pid, fields)
  if not is_id(pid) or not key_ends(rk, ":pf:" .. pid) then
    return nil, fail("INVALID", "malformed portfolio id", {field = "portfolio_id"})
  end
  local cur = redis.call("HMGET", rk, "status", unpack(fields))
  if not cur[1] then
    return nil, fail("NOT_FOUND", "portfolio " .. pid .. " does not exist",
      {id = pid, resource = "portfolio"})
  end
  return cur
end

-- open_roster(rk, rok, mk, ek, pid, fields): open_portfolio for a membership change: also
-- checks the roster, priority index and events keys, and that the portfolio is active.
local function open_roster(rk, rok, mk, ek, pid, fields)
  local cur, err = open_portfolio(rk, pid, fields)
  if cur == nil then return nil, err end
  if not key_ends(rok, ":pr:" .. pid) or not key_ends(mk, ":pm:" .. pid)
      or not key_ends(ek, ":pe:" .. pid) then
    return nil, fail("INVALID", "portfolio keys are not this portfolio's", {field = "portfolio_id"})
  end
  if cur[1] ~= "active" then
    return nil, fail("CLOSED", "portfolio " .. pid .. " is " .. cur[1]
      .. "; its members no longer change", {id = pid, status = cur[1]})
  end
  return cur
end
