-- @include "json_text"
-- Retry policies (RFC-0010): the limits bus/retries.py mirrors (a test keeps the two
-- equal), the checks of a policy's numbers, and the delay formula. retry_delay_ms is
-- computed by bus/retries.py with the same operations in the same order on the same
-- doubles, so the two give the same milliseconds (a test compares them through the script).
local RETRY_MAX_RETRIES = 1000
local RETRY_MAX_DELAY_MS = 604800000
local RETRY_MAX_MULTIPLIER = 100
local RETRY_MAX_ERRORS = 64
local RETRY_ERROR_BYTES = 128
local RETRY_MAX_THRESHOLD = 1000000
local RETRY_STRATEGIES = {none = true, fixed = true, exponential = true, linear = true}

-- retry_count(text, max): the integer 0..max written as plain decimal text, or nil
local function retry_count(text, max)
  if type(text) ~= "string" or #text > 12
      or (text ~= "0" and not string.find(text, "^[1-9]%d*$")) then
    return nil
  end
  local n = tonumber(text)
  if n > max then return nil end
  return n
end

-- retry_number(text, low, high): the JSON number text's value when within [low, high]
local function retry_number(text, low, high)
  if type(text) ~= "string" or #text > 32 or not js_number(text) then return nil end
  local n = tonumber(text)
  if n < low or n > high then return nil end
  return n
end

-- retry_delay_ms(strategy, attempt, base, cap, multiplier, jitter, r): milliseconds from
-- the failure of attempt `attempt` (1-based) to the retry. fixed: base; linear: base *
-- attempt; exponential: base * multiplier^(attempt - 1), multiplied step by step and
-- stopped at the cap; then capped at `cap`, floored, plus floor(delay * jitter * r) where
-- r in [0, 1) is the caller's random draw. "none" never retries: 0.
local function retry_delay_ms(strategy, attempt, base, cap, multiplier, jitter, r)
  if strategy == "none" then return 0 end
  local d = base
  if strategy == "linear" then
    d = base * attempt
  elseif strategy == "exponential" then
    for _ = 2, attempt do
      if d >= cap then break end
      d = d * multiplier
    end
  end
  if d > cap then d = cap end
  return math.floor(d) + math.floor(d * jitter * r)
end

-- retry_matches(list_text, code): whether an error code is retryable under the policy's
-- retryable_errors (JSON list text, or false when the policy has none: every error is).
-- Case-insensitive, so "rate_limit" matches RFC-0010's "RATE_LIMIT".
local function retry_matches(list_text, code)
  if not list_text then return true end
  local ok, list = pcall(cjson.decode, list_text)
  if not ok or type(list) ~= "table" then return false end
  local wanted = string.lower(code)
  for n = 1, #list do
    if type(list[n]) == "string" and string.lower(list[n]) == wanted then return true end
  end
  return false
end
