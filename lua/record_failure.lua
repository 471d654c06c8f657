--[[
record_failure: record a failed attempt on an intent and decide, from its retry policy,
whether and when it is retried (RFC-0010).

Invariants:
  - attempt numbers are per intent, 1, 2, 3, … with no gaps or repeats: the next one is
    the last recorded + 1; a caller's attempt number must be exactly that (else CONFLICT)
  - a retry is scheduled only when the intent has a policy, its strategy is not none,
    the attempt number is at most max_retries, the error code is retryable (every code
    when the policy lists none; else a case-insensitive match on the list) and the caller
    did not decline (will_retry "0"); the delay is includes/retry_policy.lua's formula
    with the caller's random draw for jitter (the same numbers as bus/retries.py)
  - a scheduled retry sets the intent's member of the partition's due set to its time;
    a failure that is not retried removes it (the latest failure decides)
  - retries_exhausted is recorded once per policy: by the first failure past the budget
    (with strategy none, the first failure), carrying the fallback agent for the daemon
  - closed intents record no failures; failures do not change the intent's version
  - the record, its events and the schedule are written together, after every check

KEYS:
  [1] intent    hash   {ns:p}:i:<id>
  [2] policy    hash   {ns:p}:rp:<id>
  [3] failures  stream {ns:p}:fl:<id>
  [4] events    stream {ns:p}:e:<id>
  [5] bus       stream {ns:p}:bus
  [6] due       zset   {ns:p}:due:retry

ARGV:
  [1] id          the intent id
  [2] attempt     the failed attempt's number, or "" for the next one
  [3] code        the error code (1-128 bytes), or ""
  [4] message     the error message (may be empty)
  [5] metadata    JSON object text
  [6] will_retry  "0" when the caller declines a retry, else ""
  [7] draw        the caller's random draw for jitter, a JSON number in [0, 1)
  [8] actor       the agent whose attempt failed

Returns: {failure id (its stream entry id), attempt number, recorded_at µs, retry µs or ""}
Errors: INVALID, TOO_LARGE, NOT_FOUND, CLOSED, CONFLICT
Events: failure_recorded, retry_scheduled, retries_exhausted
]]
-- @include "fail"
-- @include "now_us"
-- @include "iso_time"
-- @include "limits"
-- @include "validate"
-- @include "terminal"
-- @include "open_intent"
-- @include "retry_policy"
-- @include "emit"

local rcall = redis.call
local ik, pk, fk, ek, bk, dk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, given, code, message, metadata, declined, actor =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6] == "0", ARGV[8]
local bad_actor = check_actor(actor)
if bad_actor then return bad_actor end

if code ~= "" and not is_text(code, RETRY_ERROR_BYTES) then
  return fail("INVALID", "error_code must be 1-" .. RETRY_ERROR_BYTES .. " bytes of text",
    {field = "error_code"})
end
local bad_message = check_note(message, "error_message", LIMIT_TEXT_BYTES)
if bad_message then return bad_message end
if #metadata > LIMIT_PAYLOAD_BYTES then
  return fail("TOO_LARGE", "metadata is over " .. LIMIT_PAYLOAD_BYTES .. " bytes",
    {field = "metadata", limit = LIMIT_PAYLOAD_BYTES, size = #metadata})
end
if not js_valid(metadata) or js_kind(metadata) ~= "object" then
  return fail("INVALID", "metadata must be a JSON object", {field = "metadata"})
end
if ARGV[6] ~= "" and not declined then
  return fail("INVALID", 'will_retry must be "0" or ""', {field = "will_retry"})
end
local draw = retry_number(ARGV[7], 0, 1)
if draw == nil or draw >= 1 then
  return fail("INVALID", "the jitter draw must be a number in [0, 1)", {field = "jitter_fraction"})
end
local wanted = nil
if given ~= "" then
  wanted = retry_count(given, 1e12)
  if wanted == nil or wanted < 1 then
    return fail("INVALID", "attempt must be a positive integer", {field = "attempt"})
  end
end
if not key_ends(pk, ":rp:" .. id) or not key_ends(fk, ":fl:" .. id) then
  return fail("INVALID", "malformed intent id", {field = "intent_id"})
end
local cur, err = open_intent(ik, id, {"status"})
if cur == nil then return err end
if TERMINAL[cur[2]] then
  return fail("CLOSED", "intent " .. id .. " is " .. cur[2] .. " and records no failures",
    {status = cur[2]})
end

local last = 0
local tail = rcall("XREVRANGE", fk, "+", "-", "COUNT", 1)
if #tail > 0 then
  local f = tail[1][2]
  for n = 1, #f, 2 do
    if f[n] == "n" then last = tonumber(f[n + 1]) or 0 end
  end
end
local attempt = last + 1
if wanted ~= nil and wanted ~= attempt then
  return fail("CONFLICT", "attempt " .. given .. " of intent " .. id .. " is not the next one: "
    .. last .. " failures are recorded, so the next is " .. attempt,
    {field = "attempt", expected_attempt = attempt})
end

-- the decision, from the stored policy (written by set_retry_policy, so well-formed)
local p = rcall("HMGET", pk, "strategy", "max_retries", "base_delay_ms", "max_delay_ms",
  "backoff_multiplier", "jitter", "retryable_errors", "fallback_agent_id", "exhausted")
local reason, delay = "scheduled", nil
if not p[1] then
  reason = "no_policy"
elseif declined then
  reason = "declined"
elseif not retry_matches(p[7], code) then
  reason = "not_retryable"
elseif p[1] == "none" or attempt > tonumber(p[2]) then
  reason = "exhausted"
else
  delay = retry_delay_ms(p[1], attempt, tonumber(p[3]), tonumber(p[4]), tonumber(p[5]),
    tonumber(p[6]), draw)
end

local at = now_us()
local retry_at = ""
if delay ~= nil then retry_at = int(at + delay * 1000) end
local fid = rcall("XADD", fk, "*", "n", attempt, "a", actor, "c", code, "m", message,
  "md", metadata, "at", int(at), "r", retry_at)
local code_json = "null"
if code ~= "" then code_json = cjson.encode(code) end
local head = '{"failure_id":"' .. fid .. '","attempt_number":' .. int(attempt)
emit(ik, ek, bk, id, "failure_recorded", actor, head .. ',"error_code":' .. code_json
  .. ',"error_message":' .. cjson.encode(message) .. ',"will_retry":'
  .. tostring(delay ~= nil) .. ',"reason":"' .. reason .. '"}', at)
if delay ~= nil then
  rcall("ZADD", dk, tonumber(retry_at), id)
  emit(ik, ek, bk, id, "retry_scheduled", actor, head .. ',"next_attempt":' .. int(attempt + 1)
    .. ',"delay_ms":' .. int(delay) .. ',"retry_at":"' .. iso_time(tonumber(retry_at)) .. '"}', at)
else
  rcall("ZREM", dk, id)
  if reason == "exhausted" and not p[9] then
    rcall("HSET", pk, "exhausted", attempt)
    local fallback = "null"
    if p[8] then fallback = cjson.encode(p[8]) end
    emit(ik, ek, bk, id, "retries_exhausted", actor, head .. ',"max_retries":' .. p[2]
      .. ',"strategy":"' .. p[1] .. '","fallback_agent_id":' .. fallback .. "}", at)
  end
end
return {fid, attempt, int(at), retry_at}
