-- @include "fail"
-- Shared input checks. Each returns true or false; scripts turn a false into fail().
local function is_id(v)
  return type(v) == "string" and #v >= 1 and #v <= 128
    and string.find(v, "^[%w_~%-][%w%._~%-]*$") ~= nil
end

-- is_utf8(s): well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF);
-- every reader of the bus decodes text strictly, so nothing else may be stored.
-- Jumps from one non-ASCII byte to the next, so ASCII text costs one find.
local function is_utf8(s)
  local i = 1
  while true do
    i = string.find(s, "[\128-\255]", i)
    if not i then return true end
    local c, c2 = string.byte(s, i, i + 1)
    local len
    if c >= 194 and c <= 223 then len = 2
    elseif c >= 224 and c <= 239 then len = 3
    elseif c >= 240 and c <= 244 then len = 4
    else return false end
    if c2 == nil or c2 < 128 or c2 > 191 then return false end
    if (c == 224 and c2 < 160) or (c == 237 and c2 > 159)
        or (c == 240 and c2 < 144) or (c == 244 and c2 > 143) then
      return false
    end
    for k = i + 2, i + len - 1 do
      local b = string.byte(s, k)
      if b == nil or b < 128 or b > 191 then return false end
    end
    i = i + len
  end
end

local function is_text(v, max_bytes)
  return type(v) == "string" and #v >= 1 and #v <= max_bytes and is_utf8(v)
end

-- free text inside a key name, escaped as bus/keyspace.py encode_segment does
local function key_segment(v)
  return (string.gsub(v, "[%%:{}]", {["%"] = "%25", [":"] = "%3A", ["{"] = "%7B", ["}"] = "%7D"}))
end

-- the key an index or record lives under must be the one the client says it is
local function key_ends(key, suffix)
  return type(key) == "string" and string.sub(key, -#suffix) == suffix
end

-- decode the JSON-object ARGV that carries a call's options; nil when malformed
local function decode_object(text)
  local ok, v = pcall(cjson.decode, text)
  if not ok or type(v) ~= "table" then return nil end
  return v
end

-- check_note(value, field, max_bytes): nil, or the error reply for free text (a reason, an
-- error message) that is not UTF-8 or is longer than max_bytes; "" is allowed
local function check_note(value, field, max_bytes)
  if #value > max_bytes then
    return fail("TOO_LARGE", field .. " is over " .. max_bytes .. " bytes",
      {field = field, limit = max_bytes, size = #value})
  end
  if not is_utf8(value) then
    return fail("INVALID", field .. " must be UTF-8 text", {field = field})
  end
end

-- check_actor(actor): nil, or the error reply for an actor that is not short UTF-8 text
local function check_actor(actor)
  if not is_text(actor, 256) then
    return fail("INVALID", "actor must be a non-empty string of at most 256 bytes", {field = "actor"})
  end
end
