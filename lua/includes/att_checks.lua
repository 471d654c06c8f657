-- @include "fail"
-- @include "limits"
-- @include "validate"
-- @include "json_text"
-- Attachments (RFC-0005): input checks for add_attachment. Metadata lives in
-- {ns:p}:at:<id> (attachment id -> JSON), inline content in {ns:p}:ac:<id> (attachment
-- id -> base64 text), so listing never reads content.

local ATT_PER_INTENT = 256  -- attachments one intent holds (bus/attachments.py)
local ATT_URL_BYTES = 2048

-- att_b64_size(text): the decoded size of canonical base64 text (padded, no line
-- breaks), or nil when it is not base64
local function att_b64_size(text)
  if #text % 4 ~= 0 or not string.find(text, "^[A-Za-z0-9+/]*=?=?$") then return nil end
  local pad = 0
  if string.sub(text, -2) == "==" then
    pad = 2
  elseif string.sub(text, -1) == "=" then
    pad = 1
  end
  return #text / 4 * 3 - pad
end

-- type/subtype with RFC 6838 name characters, optionally followed by ;parameters
local function att_is_mime(m)
  if #m > 255 then return false end
  local rest = string.match(m, "^%w[%w!#%$&%^_%.%+%-]*/%w[%w!#%$&%^_%.%+%-]*(.*)$")
  return rest ~= nil and (rest == "" or string.find(rest, "^;[\32-\126]*$") ~= nil)
end

-- an absolute URL or URI: scheme ":" then no whitespace or control characters
local function att_is_url(u)
  return is_text(u, ATT_URL_BYTES) and string.find(u, "^%a[%w%+%.%-]*:[^%s%c]+$") ~= nil
end

-- RFC-0005's content-specific fields, each null or of its type; other keys are free
local ATT_COUNTS = {width = true, height = true, pages = true}
local ATT_AMOUNTS = {duration = true, frame_rate = true}

-- att_metadata(text): nil when text is a JSON object whose known fields have their
-- types, else the error reply
local function att_metadata(text)
  if #text > LIMIT_TEXT_BYTES then
    return fail("TOO_LARGE", "metadata is over " .. LIMIT_TEXT_BYTES .. " bytes",
      {field = "metadata", limit = LIMIT_TEXT_BYTES, size = #text})
  end
  if not js_valid(text) or js_kind(text) ~= "object" then
    return fail("INVALID", "metadata must be a JSON object", {field = "metadata"})
  end
  local m = cjson.decode(text)
  for key, v in pairs(m) do
    if v ~= cjson.null then
      local ok = true
      if ATT_COUNTS[key] then
        ok = type(v) == "number" and v >= 0 and v == math.floor(v)
      elseif ATT_AMOUNTS[key] then
        ok = type(v) == "number" and v >= 0
      elseif key == "encoding" then
        ok = type(v) == "string"
      end
      if not ok then
        return fail("INVALID", "metadata." .. key .. " has the wrong type", {field = "metadata"})
      end
    end
  end
  return nil
end
