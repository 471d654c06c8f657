-- Shared input checks. Each returns true or false; scripts turn a false into fail().
local function is_id(v)
  return type(v) == "string" and #v >= 1 and #v <= 128
    and string.find(v, "^[%w_~%-][%w%._~%-]*$") ~= nil
end

local function is_text(v, max_bytes)
  return type(v) == "string" and #v >= 1 and #v <= max_bytes
end

-- the key an index or record lives under must be the one the client says it is
local function key_ends(key, suffix)
  return string.sub(key, -#suffix) == suffix
end

-- decode the JSON-object ARGV that carries a call's options; nil when malformed
local function decode_object(text)
  local ok, v = pcall(cjson.decode, text)
  if not ok or type(v) ~= "table" then return nil end
  return v
end
