--[[
set_retry_policy: set (or replace) an intent's retry policy (RFC-0010).

Invariants:
  - every field is checked before the first write; a bad one changes nothing
  - one policy per intent: a new one replaces the old as a whole, which also re-arms
    retries_exhausted (recorded once per policy)
  - base_delay_ms <= max_delay_ms <= 7 days; 1 <= backoff_multiplier <= 100;
    0 <= jitter <= 1; 0 <= max_retries <= 1000
  - closed intents take no policy; a policy does not change the intent's version
  - the policy and its retry_policy_set event are written together

KEYS:
  [1] intent  hash   {ns:p}:i:<id>
  [2] policy  hash   {ns:p}:rp:<id>
  [3] events  stream {ns:p}:e:<id>
  [4] bus     stream {ns:p}:bus

ARGV:
  [1] id          the intent id
  [2] strategy    none, fixed, exponential or linear
  [3] retries     max_retries, 0-1000
  [4] base        base delay in milliseconds (integer)
  [5] cap         max delay in milliseconds (integer, >= base)
  [6] multiplier  backoff multiplier (JSON number, 1-100)
  [7] jitter      jitter fraction (JSON number, 0-1)
  [8] retryable   JSON list of error codes, or "" for every error
  [9] fallback    fallback agent id, or ""
  [10] threshold  failure threshold (1-1000000), or ""
  [11] actor      who sets it

Returns: the stored policy hash as a flat list of field, value
Errors: INVALID, NOT_FOUND, CLOSED
Events: retry_policy_set
]]
-- @include "fail"
-- @include "now_us"
-- @include "validate"
-- @include "terminal"
-- @include "open_intent"
-- @include "retry_policy"
-- @include "emit"

local rcall = redis.call
local ik, pk, ek, bk = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, strategy, retryable, fallback, threshold, actor =
  ARGV[1], ARGV[2], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local bad_actor = check_actor(actor)
if bad_actor then return bad_actor end

if not RETRY_STRATEGIES[strategy] then
  return fail("INVALID", "strategy must be none, fixed, exponential or linear",
    {field = "strategy"})
end
local retries = retry_count(ARGV[3], RETRY_MAX_RETRIES)
if retries == nil then
  return fail("INVALID", "max_retries must be an integer from 0 to " .. RETRY_MAX_RETRIES,
    {field = "max_retries"})
end
local base = retry_count(ARGV[4], RETRY_MAX_DELAY_MS)
if base == nil then
  return fail("INVALID", "base delay must be from 0 to " .. RETRY_MAX_DELAY_MS .. " ms",
    {field = "base_delay_ms"})
end
local cap = retry_count(ARGV[5], RETRY_MAX_DELAY_MS)
if cap == nil or cap < base then
  return fail("INVALID", "max delay must be from the base delay to " .. RETRY_MAX_DELAY_MS
    .. " ms", {field = "max_delay_ms"})
end
if retry_number(ARGV[6], 1, RETRY_MAX_MULTIPLIER) == nil then
  return fail("INVALID", "backoff_multiplier must be a number from 1 to " .. RETRY_MAX_MULTIPLIER,
    {field = "backoff_multiplier"})
end
if retry_number(ARGV[7], 0, 1) == nil then
  return fail("INVALID", "jitter must be a number from 0 to 1", {field = "jitter"})
end
if retryable ~= "" then
  local ok, list = pcall(cjson.decode, retryable)
  local good = ok and type(list) == "table" and string.sub(retryable, 1, 1) == "["
    and #list <= RETRY_MAX_ERRORS and js_valid(retryable)
  if good then
    local count = 0
    for _ in pairs(list) do count = count + 1 end
    good = count == #list
    for n = 1, #list do
      if not is_text(list[n], RETRY_ERROR_BYTES) then good = false end
    end
  end
  if not good then
    return fail("INVALID", "retryable_errors must be a list of at most " .. RETRY_MAX_ERRORS
      .. " error codes of 1-" .. RETRY_ERROR_BYTES .. " bytes", {field = "retryable_errors"})
  end
end
if fallback ~= "" and not is_text(fallback, 256) then
  return fail("INVALID", "fallback_agent_id must be 1-256 bytes of text",
    {field = "fallback_agent_id"})
end
if threshold ~= "" then
  local t = retry_count(threshold, RETRY_MAX_THRESHOLD)
  if t == nil or t < 1 then
    return fail("INVALID", "failure_threshold must be an integer from 1 to " .. RETRY_MAX_THRESHOLD,
      {field = "failure_threshold"})
  end
end
if not key_ends(pk, ":rp:" .. id) then
  return fail("INVALID", "malformed intent id", {field = "intent_id"})
end
local cur, err = open_intent(ik, id, {"status"})
if cur == nil then return err end
if TERMINAL[cur[2]] then
  return fail("CLOSED", "intent " .. id .. " is " .. cur[2] .. " and takes no retry policy",
    {status = cur[2]})
end

local at = now_us()
local fields = {"strategy", strategy, "max_retries", ARGV[3], "base_delay_ms", ARGV[4],
  "max_delay_ms", ARGV[5], "backoff_multiplier", ARGV[6], "jitter", ARGV[7],
  "set_by", actor, "set_at", int(at)}
local payload = {'{"strategy":"', strategy, '","max_retries":', ARGV[3], ',"base_delay_ms":',
  ARGV[4], ',"max_delay_ms":', ARGV[5], ',"backoff_multiplier":', ARGV[6], ',"jitter":',
  ARGV[7], ',"retryable_errors":'}
if retryable ~= "" then
  fields[#fields + 1] = "retryable_errors"
  fields[#fields + 1] = retryable
  payload[#payload + 1] = retryable
else
  payload[#payload + 1] = "null"
end
payload[#payload + 1] = ',"fallback_agent_id":'
if fallback ~= "" then
  fields[#fields + 1] = "fallback_agent_id"
  fields[#fields + 1] = fallback
  payload[#payload + 1] = cjson.encode(fallback)
else
  payload[#payload + 1] = "null"
end
payload[#payload + 1] = ',"failure_threshold":'
if threshold ~= "" then
  fields[#fields + 1] = "failure_threshold"
  fields[#fields + 1] = threshold
  payload[#payload + 1] = threshold
else
  payload[#payload + 1] = "null"
end
payload[#payload + 1] = "}"

rcall("DEL", pk)
rcall("HSET", pk, unpack(fields))
emit(ik, ek, bk, id, "retry_policy_set", actor, table.concat(payload), at)
return fields
