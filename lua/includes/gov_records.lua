-- @include "fail"
-- @include "limits"
-- @include "json_text"
-- Governance records (RFC-0003): arbitration requests and delegation contracts are stored
-- as JSON text built here by concatenation, so the caller's JSON (options, context, scope,
-- constraints) is kept byte for byte. A record ends with its status member, the only part
-- that ever changes: closing one swaps that tail, never re-encodes the rest.

local GOV_ARBITRATIONS = 1000  -- arbitration requests one intent keeps (bus/governance.py)

-- gov_json(text, kind, field): nil when text is JSON of the kind ("array" | "object"),
-- else the error reply
local function gov_json(text, kind, field)
  if not js_valid(text) or js_kind(text) ~= kind then
    local what = "a JSON object"
    if kind == "array" then what = "a JSON list" end
    return fail("INVALID", field .. " must be " .. what, {field = field})
  end
  return nil
end

-- gov_size(total, field): nil, or TOO_LARGE when the caller's JSON passes the payload limit
local function gov_size(total, field)
  if total > LIMIT_PAYLOAD_BYTES then
    return fail("TOO_LARGE", field .. " is over " .. LIMIT_PAYLOAD_BYTES .. " bytes",
      {field = field, limit = LIMIT_PAYLOAD_BYTES, size = total})
  end
  return nil
end

-- the tail of an open record with status `status`
local function gov_tail(status)
  return '"status":"' .. status .. '"}'
end

local function gov_is(text, status)
  local tail = gov_tail(status)
  return string.sub(text, -#tail) == tail
end

-- gov_close(text, from, members): the record with its status tail replaced by `members`
-- (text starting `"status":...` and ending with the closing brace)
local function gov_close(text, from, members)
  return string.sub(text, 1, #text - #gov_tail(from)) .. members
end

-- an optional text argument ("" = none) as a JSON value
local function gov_opt(text)
  if text == "" then return "null" end
  return cjson.encode(text)
end
