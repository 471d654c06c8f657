--[[
record_cost: record one cost of an intent within its budget, and add it to the running totals.

Invariants:
  - every argument and the intent's budget (includes/cost_budget.lua) are checked before
    the first write: a refused cost (INVALID, TOO_LARGE, NOT_FOUND, BUDGET_EXCEEDED)
    leaves no record, no total and no event behind
  - amounts are integer micro-units (amount x 1,000,000) end to end, added with HINCRBY on
    integer text (never a float): every total equals the sum of its records exactly
  - a cost in the budget's unit is never over max_per_call, and never takes the unit's
    total past the total limit (the smaller of max_cost and budget.max_total) nor the
    agent's total in that unit past max_per_agent; reaching a limit exactly is allowed.
    Costs in other units are recorded and summed, never limited
  - the record, the totals, cost_recorded and a budget_alert for each alert threshold
    this cost reaches are written together; a threshold fires once per intent (the
    summary hash remembers it)
  - the sum of all of an intent's costs stays below COST_TOTAL_MAX_MICROS (2^53 holds it)
  - costs do not change the intent's version; closed intents still take costs (the
    money was spent)

KEYS:
  [1] intent   hash   {ns:p}:i:<id>
  [2] events   stream {ns:p}:e:<id>
  [3] bus      stream {ns:p}:bus
  [4] costs    stream {ns:p}:c:<id>
  [5] summary  hash   {ns:p}:cs:<id>

ARGV:
  [1] id         the intent id
  [2] cost_id    the record's id (a UUID chosen by the client)
  [3] cost_type  tokens, api_call, compute or custom
  [4] micros     the amount in micro-units: canonical decimal digits, at most 10^15
  [5] unit       1-32 characters of A-Z a-z 0-9 _ . / -
  [6] provider   1-128 bytes of UTF-8 text, or "" for none
  [7] metadata   JSON object text, at most COST_METADATA_BYTES
  [8] actor      the agent that spent it

Returns: {the record's entry id in the costs stream, recorded_at (microseconds)}
Errors: INVALID, TOO_LARGE, NOT_FOUND, BUDGET_EXCEEDED
Events: cost_recorded, budget_alert
]]
-- @include "fail"
-- @include "now_us"
-- @include "limits"
-- @include "validate"
-- @include "json_text"
-- @include "open_intent"
-- @include "emit"
-- @include "cost_limits"
-- @include "cost_budget"

-- The summary hash, all values integer micro-units unless said:
--   n                 how many records (a count)
--   total             every amount, whatever its unit
--   t:<cost_type>     by type          a:<agent>        by agent
--   u:<unit>          by unit          p:<provider>     by provider (when given)
--   x:<unit>:<agent>  by agent within one unit: what max_per_agent is checked against
--   f:<percent>       the µs time the alert threshold fired (once per intent)
-- Costs stream entries: id, a (agent), t (type), m (micros), u, p ("" = none), md, at.

local rcall = redis.call
local ik, ek, bk, ck, sk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, cost_id, ctype, micros_text = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local unit, provider, metadata, actor = ARGV[5], ARGV[6], ARGV[7], ARGV[8]

local bad_actor = check_actor(actor)
if bad_actor then return bad_actor end
if not is_id(cost_id) then return fail("INVALID", "malformed cost id", {field = "cost_id"}) end
if not COST_TYPES[ctype] then
  return fail("INVALID", "cost_type must be one of tokens, api_call, compute, custom",
    {field = "cost_type"})
end
if #micros_text > 16 or not (micros_text == "0" or string.find(micros_text, "^[1-9]%d*$"))
    or tonumber(micros_text) > COST_AMOUNT_MAX_MICROS then
  return fail("INVALID", "amount must be a number from 0 to "
    .. cost_decimal(COST_AMOUNT_MAX_MICROS), {field = "amount"})
end
local micros = tonumber(micros_text)
if not cost_is_unit(unit) then
  return fail("INVALID", "unit must be 1-32 characters of A-Z a-z 0-9 _ . / -", {field = "unit"})
end
if provider ~= "" and not is_text(provider, 128) then
  return fail("INVALID", "provider must be text of at most 128 bytes", {field = "provider"})
end
if #metadata > COST_METADATA_BYTES then
  return fail("TOO_LARGE", "metadata is over " .. COST_METADATA_BYTES .. " bytes",
    {field = "metadata", limit = COST_METADATA_BYTES, size = #metadata})
end
if not js_valid(metadata) or js_kind(metadata) ~= "object" then
  return fail("INVALID", "metadata must be a JSON object", {field = "metadata"})
end
local cur, err = open_intent(ik, id, {"constraints"})
if cur == nil then return err end
if not key_ends(ck, ":c:" .. id) or not key_ends(sk, ":cs:" .. id) then
  return fail("INVALID", "cost keys do not belong to intent " .. id, {field = "intent_id"})
end
local budget, bad_budget = cost_budget(cur[2])
if budget == nil then return bad_budget end

local agent_field = "x:" .. unit .. ":" .. actor
local fields = {"total", "u:" .. unit, agent_field}
for n = 1, #budget.alerts do fields[#fields + 1] = "f:" .. budget.alerts[n] end
local held = rcall("HMGET", sk, unpack(fields))
local total = tonumber(held[1]) or 0
local unit_total = tonumber(held[2]) or 0
local agent_total = tonumber(held[3]) or 0
if total + micros > COST_TOTAL_MAX_MICROS then
  return fail("TOO_LARGE", "the costs of intent " .. id .. " would pass "
    .. cost_decimal(COST_TOTAL_MAX_MICROS) .. " in all",
    {field = "amount", limit = cost_decimal(COST_TOTAL_MAX_MICROS), size = cost_decimal(total + micros)})
end

local fired = {}
if unit == budget.unit then
  local amount = cost_decimal(micros)
  if budget.call ~= nil and micros > budget.call then
    return fail("BUDGET_EXCEEDED", "a cost of " .. amount .. " " .. unit .. " is over the "
      .. cost_decimal(budget.call) .. " allowed per call", {limit = "max_per_call", unit = unit,
      max = cost_decimal(budget.call), amount = amount})
  end
  if budget.total ~= nil and unit_total + micros > budget.total then
    return fail("BUDGET_EXCEEDED", "a cost of " .. amount .. " " .. unit .. " would take intent "
      .. id .. " past its budget of " .. cost_decimal(budget.total) .. " (spent: "
      .. cost_decimal(unit_total) .. ")", {limit = "max_total", unit = unit,
      max = cost_decimal(budget.total), spent = cost_decimal(unit_total), amount = amount})
  end
  if budget.agent ~= nil and agent_total + micros > budget.agent then
    return fail("BUDGET_EXCEEDED", "a cost of " .. amount .. " " .. unit .. " would take "
      .. actor .. " past its budget of " .. cost_decimal(budget.agent) .. " per agent (spent: "
      .. cost_decimal(agent_total) .. ")", {limit = "max_per_agent", unit = unit,
      agent_id = actor, max = cost_decimal(budget.agent), spent = cost_decimal(agent_total),
      amount = amount})
  end
  if budget.total ~= nil then
    for n = 1, #budget.alerts do
      local percent = budget.alerts[n]
      if not held[3 + n] and unit_total + micros >= cost_threshold(budget.total, percent) then
        fired[#fired + 1] = percent
      end
    end
  end
end

-- every check passed: write
local at = now_us()
local eid = rcall("XADD", ck, "*", "id", cost_id, "a", actor, "t", ctype, "m", micros_text,
  "u", unit, "p", provider, "md", metadata, "at", int(at))
rcall("HINCRBY", sk, "n", 1)
rcall("HINCRBY", sk, "total", micros_text)
rcall("HINCRBY", sk, "t:" .. ctype, micros_text)
rcall("HINCRBY", sk, "a:" .. actor, micros_text)
rcall("HINCRBY", sk, "u:" .. unit, micros_text)
rcall("HINCRBY", sk, agent_field, micros_text)
if provider ~= "" then rcall("HINCRBY", sk, "p:" .. provider, micros_text) end

local provider_json = "null"
if provider ~= "" then provider_json = cjson.encode(provider) end
emit(ik, ek, bk, id, "cost_recorded", actor, '{"cost_id":"' .. cost_id .. '","cost_type":"'
  .. ctype .. '","amount":' .. cost_decimal(micros) .. ',"unit":"' .. unit .. '","provider":'
  .. provider_json .. ',"agent_id":' .. cjson.encode(actor) .. "}", at)
for n = 1, #fired do
  rcall("HSET", sk, "f:" .. fired[n], int(at))
  emit(ik, ek, bk, id, "budget_alert", actor, '{"threshold_percent":' .. fired[n]
    .. ',"unit":"' .. unit .. '","limit":' .. cost_decimal(budget.total) .. ',"total":'
    .. cost_decimal(unit_total + micros) .. ',"cost_id":"' .. cost_id .. '"}', at)
end
return {eid, int(at)}
