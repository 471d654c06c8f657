--[[
create_portfolio: create a portfolio (RFC-0004/0007), active and empty.

Invariants:
  - an id already used is EXISTS and changes nothing (portfolio ids are never reused)
  - governance_policy and metadata are JSON objects kept verbatim; the policy's known
    fields have their types checked here (require_all_completed and
    allow_partial_completion booleans, auto_complete_threshold a number in (0, 100]),
    and the auto-completion threshold is stored beside them (thr: 100 under
    require_all_completed, else the threshold, else 0 for none) so syncs never decode it
  - the record, its partition index entries (all, and by status) and portfolio_created
    are written together

KEYS:
  [1] portfolio  hash   {ns:p}:pf:<pid>
  [2] events     stream {ns:p}:pe:<pid>
  [3] bus        stream {ns:p}:bus
  [4] index      zset   {ns:p}:x:pf
  [5] ix_active     zset   {ns:p}:x:pf:active
  [6] ix_completed  zset   {ns:p}:x:pf:completed
  [7] ix_abandoned  zset   {ns:p}:x:pf:abandoned

ARGV:
  [1] id           the portfolio id
  [2] name         1 byte to LIMIT_TITLE_BYTES of UTF-8
  [3] description  UTF-8 text, "" for none
  [4] created_by   who owns it
  [5] governance   JSON object text
  [6] metadata     JSON object text
  [7] actor        who creates it

Returns: the record as a flat HGETALL array (bus/portfolios.py decodes it)
Errors: INVALID, TOO_LARGE, EXISTS
Events: portfolio_created
]]
-- @include "fail"
-- @include "now_us"
-- @include "limits"
-- @include "validate"
-- @include "json_text"
-- @include "portfolio"

local rcall = redis.call
local rk, ek, bk, xk = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local pid, name, description, created_by, governance, metadata, actor =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local bad = check_actor(actor)
if bad then return bad end
if not is_id(pid) or not key_ends(rk, ":pf:" .. pid) or not key_ends(ek, ":pe:" .. pid)
    or not key_ends(xk, ":x:pf") then
  return fail("INVALID", "malformed portfolio id or keys", {field = "portfolio_id"})
end
if not is_text(name, LIMIT_TITLE_BYTES) then
  return fail("INVALID", "name must be a non-empty string of at most " .. LIMIT_TITLE_BYTES
    .. " bytes", {field = "name"})
end
if description ~= "" and not is_text(description, LIMIT_TEXT_BYTES) then
  return fail("INVALID", "description must be text of at most " .. LIMIT_TEXT_BYTES .. " bytes",
    {field = "description"})
end
if not is_text(created_by, 256) then
  return fail("INVALID", "created_by must be a non-empty string of at most 256 bytes",
    {field = "created_by"})
end
for field, text in pairs({governance_policy = governance, metadata = metadata}) do
  if #text > LIMIT_PORTFOLIO_JSON_BYTES then
    return fail("TOO_LARGE", field .. " is over " .. LIMIT_PORTFOLIO_JSON_BYTES .. " bytes",
      {field = field, limit = LIMIT_PORTFOLIO_JSON_BYTES, size = #text})
  end
  if not js_valid(text) or js_kind(text) ~= "object" then
    return fail("INVALID", field .. " must be a JSON object", {field = field})
  end
end
local policy = cjson.decode(governance)
for _, flag in ipairs({"require_all_completed", "allow_partial_completion"}) do
  local v = policy[flag]
  if v ~= nil and v ~= cjson.null and type(v) ~= "boolean" then
    return fail("INVALID", flag .. " must be true or false", {field = "governance_policy." .. flag})
  end
end
local threshold = policy["auto_complete_threshold"]
if threshold == cjson.null then threshold = nil end
if threshold ~= nil and (type(threshold) ~= "number" or threshold ~= threshold
    or threshold <= 0 or threshold > 100) then
  return fail("INVALID", "auto_complete_threshold must be a percentage above 0 and at most 100",
    {field = "governance_policy.auto_complete_threshold"})
end
local shared = policy["shared_constraints"]
if shared ~= nil and shared ~= cjson.null and type(shared) ~= "table" then
  return fail("INVALID", "shared_constraints must be an object",
    {field = "governance_policy.shared_constraints"})
end
local ix, ix_err = pf_indexes(5)
if ix == nil then return ix_err end
if rcall("EXISTS", rk) == 1 then
  return fail("EXISTS", "portfolio " .. pid .. " already exists", {id = pid})
end

local at = now_us()
local thr = "0"
if policy["require_all_completed"] == true then
  thr = "100"
elseif threshold ~= nil then
  thr = string.format("%.17g", threshold)
end
local partial = "0"
if policy["allow_partial_completion"] == true then partial = "1" end
rcall("HSET", rk, "id", pid, "name", name, "created_by", created_by, "status", "active",
  "gov", governance, "md", metadata, "created_us", int(at), "updated_us", int(at),
  "version", 1, "total", 0, "thr", thr, "partial", partial)
if description ~= "" then rcall("HSET", rk, "description", description) end
rcall("ZADD", xk, 0, string.format("%016.0f", at) .. ":" .. pid)
rcall("ZADD", ix.active, 0, string.format("%016.0f", at) .. ":" .. pid)
pf_emit(rk, ek, bk, pid, "portfolio_created", actor,
  '{"name":' .. cjson.encode(name) .. ',"created_by":' .. cjson.encode(created_by) .. '}', at)
return rcall("HGETALL", rk)
