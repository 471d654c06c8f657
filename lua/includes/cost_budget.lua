-- @include "fail"
-- @include "cost_limits"
-- cost_budget(constraints_text): the budget an intent's constraints set (RFC-0009), or nil
-- and the error reply. Fails closed: a budget that cannot be read refuses every cost
-- rather than letting spending run unlimited. The table returned:
--   unit    the unit the limits are in: budget.unit; else "cents" when the RFC's *_cents
--           names are used; else "USD". Costs in other units are not limited.
--   total   micro-units: the smaller of max_cost and budget.max_total (nil: none)
--   agent   micro-units: budget.max_per_agent, per agent (nil: none)
--   call    micro-units: budget.max_per_call, per record (nil: none)
--   alerts  integer percents of `total`, ascending, without repeats
-- `budget` may also be a bare number: the same as {"max_total": n}.

local function cost_present(v)
  return v ~= nil and v ~= cjson.null
end

-- a limit (in units) as micro-units, or nil unless a number from 0 to the total maximum
local function cost_limit_micros(v)
  if type(v) ~= "number" or v ~= v or v < 0 or v * 1000000 > COST_TOTAL_MAX_MICROS then
    return nil
  end
  -- %.6f rounds the double's exact binary value correctly; v * 1e6 would not (above
  -- 2^52 it is inexact), so the micro-units are read back from that decimal text
  return tonumber((string.gsub(string.format("%.6f", v), "%.", "")))
end

local function cost_budget_error(field, message)
  return nil, fail("INVALID", "constraints." .. field .. " " .. message
    .. " (a budget that cannot be read takes no costs)", {field = "constraints." .. field})
end

local function cost_budget(text)
  local budget = {unit = "USD", alerts = {}}
  local ok, c = pcall(cjson.decode, text or "{}")
  if not ok or type(c) ~= "table" then return budget end
  local range = "must be a number from 0 to " .. cost_decimal(COST_TOTAL_MAX_MICROS)
  local total
  if cost_present(c.max_cost) then
    total = cost_limit_micros(c.max_cost)
    if total == nil then return cost_budget_error("max_cost", range) end
  end
  local block = c.budget
  if type(block) == "number" then
    block = {max_total = block}
  elseif not cost_present(block) then
    block = {}
  elseif type(block) ~= "table" or #block > 0 then
    return cost_budget_error("budget", "must be an object (or a number: its max_total)")
  end
  local limit, cents = {}, false
  local names = {"total", "per_agent", "per_call"}
  for n = 1, #names do
    local field = "max_" .. names[n]
    local v = block[field]
    if cost_present(block[field .. "_cents"]) then
      if cost_present(v) then
        return cost_budget_error("budget", "gives both " .. field .. " and " .. field .. "_cents")
      end
      field = field .. "_cents"
      v = block[field]
      cents = true
    end
    if cost_present(v) then
      limit[names[n]] = cost_limit_micros(v)
      if limit[names[n]] == nil then return cost_budget_error("budget." .. field, range) end
    end
  end
  if cost_present(block.unit) then
    if not cost_is_unit(block.unit) then
      return cost_budget_error("budget.unit", "must be 1-32 characters of A-Z a-z 0-9 _ . / -")
    end
    if cents and block.unit ~= "cents" then
      return cost_budget_error("budget.unit", "is " .. block.unit .. " but limits are named *_cents")
    end
    budget.unit = block.unit
  elseif cents then
    budget.unit = "cents"
  end
  if limit.total ~= nil and (total == nil or limit.total < total) then total = limit.total end
  budget.total, budget.agent, budget.call = total, limit.per_agent, limit.per_call

  local alerts = block.alert_threshold_percent
  if cost_present(alerts) then
    if type(alerts) == "number" then alerts = {alerts} end
    if type(alerts) ~= "table" or #alerts > COST_THRESHOLDS or (#alerts == 0 and next(alerts)) then
      return cost_budget_error("budget.alert_threshold_percent",
        "must be a percent or a list of at most " .. COST_THRESHOLDS .. " percents")
    end
    local seen = {}
    for n = 1, #alerts do
      local p = alerts[n]
      if type(p) ~= "number" or p ~= math.floor(p) or p < 1 or p > 100 then
        return cost_budget_error("budget.alert_threshold_percent",
          "must hold whole percents from 1 to 100")
      end
      if not seen[p] then
        seen[p] = true
        budget.alerts[#budget.alerts + 1] = p
      end
    end
    table.sort(budget.alerts)
  end
  return budget
end

-- cost_threshold(limit, percent): the least total (micro-units) that reaches percent% of
-- limit, computed without a product that could pass 2^53
local function cost_threshold(limit, percent)
  local q = math.floor(limit / 100)
  local r = limit - q * 100
  return q * percent + math.ceil(r * percent / 100)
end
