-- Costs (RFC-0009): the closed list of cost types, the limits on one record, and amounts
-- as exact decimal text. Mirrors bus/costs.py; a test keeps the two equal.
-- Amounts travel, are stored and are summed as integer micro-units (amount x 1,000,000):
-- every total stays below 2^53, so a Lua number holds it exactly, and HINCRBY adds it
-- exactly. Never HINCRBYFLOAT, never cjson (it rounds numbers to 14 digits).
local COST_AMOUNT_MAX_MICROS = 1000000000000000
local COST_TOTAL_MAX_MICROS = 9000000000000000
local COST_METADATA_BYTES = 16384
local COST_THRESHOLDS = 16
local COST_TYPES = {tokens = true, api_call = true, compute = true, custom = true}

-- a unit ("USD", "cents", "tokens", "gpu-seconds"): 1-32 of A-Z a-z 0-9 _ . / -, so it
-- can never contain the ":" that separates it from an agent name in a summary field
local function cost_is_unit(v)
  return type(v) == "string" and #v >= 1 and #v <= 32 and string.find(v, "^[%w_%./%-]+$") ~= nil
end

-- cost_decimal(micros): "12.5" for 12500000, "3" for 3000000: exact decimal text, usable
-- as a JSON number literal
local function cost_decimal(micros)
  local whole = math.floor(micros / 1000000)
  local frac = micros - whole * 1000000
  if frac == 0 then return string.format("%.0f", whole) end
  local text = string.gsub(string.format("%.0f.%06d", whole, frac), "0+$", "")
  return text
end
