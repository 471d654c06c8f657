-- @include "json_text"
-- Patch ops (set, append, remove) at RFC 6901 pointers. State is stored as one hash
-- field per top-level key holding that key's JSON text, so a top-level set is a plain
-- HSET and deeper ops rewrite only the one top-level value they touch.

-- parse_pointer(path) -> tokens | nil, reason
local function parse_pointer(path)
  if type(path) ~= "string" or string.sub(path, 1, 1) ~= "/" then
    return nil, "a path is a JSON pointer starting with '/'"
  end
  if not string.find(path, "[/~]", 2) then return {string.sub(path, 2)} end
  if string.find(path, "~[^01]") or string.sub(path, -1) == "~" then
    return nil, "'~' in a path must be written ~0 (for ~) or ~1 (for /)"
  end
  local tokens = {}
  for raw in string.gmatch(string.sub(path, 2) .. "/", "([^/]*)/") do
    if #tokens >= LIMIT_PATH_DEPTH then
      return nil, "path is deeper than " .. LIMIT_PATH_DEPTH .. " levels"
    end
    local t = string.gsub(raw, "~1", "/")
    t = string.gsub(t, "~0", "~")
    tokens[#tokens + 1] = t
  end
  return tokens
end

local function array_index(token)
  if token == "-" then return "-" end
  if token == "0" or string.find(token, "^[1-9]%d*$") then return tonumber(token) end
  return nil
end

local function pointer_of(tokens, k)
  local out = {}
  for n = 1, k do
    local t = string.gsub(tokens[n], "~", "~0")
    out[n] = string.gsub(t, "/", "~1")
  end
  return "/" .. table.concat(out, "/")
end

-- the text of a fresh value at tokens[k..] (objects all the way down)
local function nested(tokens, k, leaf)
  local text = leaf
  for n = #tokens, k, -1 do
    text = "{" .. cjson.encode(tokens[n]) .. ":" .. text .. "}"
  end
  return text
end

local function splice(s, from, to, text)
  return string.sub(s, 1, from - 1) .. text .. string.sub(s, to)
end

-- insert `text` as a new last item of the container whose closing bracket is at `close`
local function insert_last(s, close, count, text)
  if count > 0 then text = "," .. text end
  return splice(s, close, close, text)
end

-- cut the item spanning kstart..vend, with one adjoining comma
local function cut(s, kstart, vend, after, prev_comma)
  if string.byte(s, after) == 44 then return splice(s, kstart, js_ws(s, after + 1), "") end
  if prev_comma then return splice(s, prev_comma, vend, "") end
  return splice(s, kstart, vend, "")
end

-- apply(s, op, tokens, k, value) -> new text | nil, error message
-- s is the JSON text of the value at tokens[1..k-1]; tokens[k] is addressed inside it.
local function apply(s, op, tokens, k, value)
  local last = (k == #tokens)
  local kind = js_kind(s)
  local vstart, vend, kstart, after, prev
  if kind == "object" then
    vstart, vend, kstart, after, prev = js_member(s, js_ws(s, 1), tokens[k])
  elseif kind == "array" then
    local idx = array_index(tokens[k])
    if idx == nil then
      return nil, "'" .. tokens[k] .. "' is not an array index at " .. pointer_of(tokens, k)
    end
    if idx ~= "-" then
      vstart, vend, kstart, after, prev = js_element(s, js_ws(s, 1), idx)
    else
      local j = js_ws(s, 1)
      local _, close, count = js_element(s, j, -1)
      vstart, vend, kstart = nil, close, count
    end
    if vstart == nil and not (last and op == "set" and (idx == "-" or idx == kstart)) then
      return nil, "index " .. tokens[k] .. " is out of range at " .. pointer_of(tokens, k)
    end
  else
    return nil, "cannot address " .. pointer_of(tokens, k) .. " through a scalar"
  end
  if vstart == nil then
    -- missing: vend is the closing bracket, kstart the item count
    if op == "remove" then return nil, "nothing to remove at " .. pointer_of(tokens, k) end
    local leaf = value
    if op == "append" then leaf = "[" .. value .. "]" end
    local item
    if kind == "object" then
      item = cjson.encode(tokens[k]) .. ":" .. nested(tokens, k + 1, leaf)
    else
      item = leaf
    end
    return insert_last(s, vend, kstart, item)
  end
  if not last then
    local inner, err = apply(string.sub(s, vstart, vend - 1), op, tokens, k + 1, value)
    if inner == nil then return nil, err end
    return splice(s, vstart, vend, inner)
  end
  if op == "set" then return splice(s, vstart, vend, value) end
  if op == "remove" then return cut(s, kstart, vend, after, prev) end
  local target = string.sub(s, vstart, vend - 1)
  if js_kind(target) ~= "array" then
    return nil, "append needs a list at " .. pointer_of(tokens, k)
  end
  local _, close, count = js_element(target, js_ws(target, 1), -1)
  return splice(s, vstart, vend, insert_last(target, close, count, value))
end

-- patch_field(current, op, tokens, value) -> new text of the top-level field
-- (nil to delete it) | false, error message
local function patch_field(current, op, tokens, value)
  if #tokens == 1 then
    if op == "set" then return value end
    if op == "remove" then
      if current == nil then return false, "nothing to remove at " .. pointer_of(tokens, 1) end
      return nil
    end
    if current == nil then return "[" .. value .. "]" end
    if js_kind(current) ~= "array" then
      return false, "append needs a list at " .. pointer_of(tokens, 1)
    end
    local _, close, count = js_element(current, js_ws(current, 1), -1)
    return insert_last(current, close, count, value)
  end
  if current == nil then
    if op == "remove" then return false, "nothing to remove at " .. pointer_of(tokens, #tokens) end
    local leaf = value
    if op == "append" then leaf = "[" .. value .. "]" end
    return nested(tokens, 2, leaf)
  end
  local out, err = apply(current, op, tokens, 2, value)
  if out == nil then return false, err end
  return out
end
