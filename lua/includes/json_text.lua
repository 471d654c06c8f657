-- @include "limits"
-- @include "validate"
-- JSON text helpers that work on the text itself, so that everything a patch does not
-- touch is kept byte for byte. (Redis' cjson would turn [] into {} and round numbers
-- to 14 digits on a decode/encode trip.) Positions are 1-based byte offsets.
-- Every loop advances through a finite string, so each is bounded by its length.

local function js_ws(s, i)
  return string.find(s, "[^ \t\r\n]", i) or (#s + 1)
end

-- index just past the string literal that opens at i
local function js_skip_string(s, i)
  local j = i + 1
  while true do
    local k = string.find(s, '["\\]', j)
    if not k then return #s + 1 end
    if string.byte(s, k) == 34 then return k + 1 end
    j = k + 2
  end
end

-- index just past the value that starts at i (i is not whitespace)
local function js_skip_value(s, i)
  local c = string.byte(s, i)
  if c == 34 then return js_skip_string(s, i) end
  if c == 123 or c == 91 then
    local depth, j = 0, i
    while true do
      local k = string.find(s, '[%[%]{}"]', j)
      if not k then return #s + 1 end
      local b = string.byte(s, k)
      if b == 34 then
        j = js_skip_string(s, k)
      elseif b == 123 or b == 91 then
        depth = depth + 1
        j = k + 1
      else
        depth = depth - 1
        j = k + 1
        if depth == 0 then return j end
      end
    end
  end
  return string.find(s, "[,%]} \t\r\n]", i) or (#s + 1)
end

-- JSON's number grammar (cjson also takes "+1", "01", ".5" and "1.", which no JSON
-- reader takes back)
local function js_number(t)
  local rest = string.match(t, "^%-?0(.*)$") or string.match(t, "^%-?[1-9]%d*(.*)$")
  if rest == nil then return false end
  if string.sub(rest, 1, 1) == "." then
    rest = string.match(rest, "^%.%d+(.*)$")
    if rest == nil then return false end
  end
  if rest ~= "" and string.match(rest, "^[eE][%+%-]?%d+$") == nil then return false end
  local n = tonumber(t)
  return n ~= nil and n > -math.huge and n < math.huge  -- 1e400 reads as infinity
end

-- js_depth(bare): nesting depth of JSON text whose strings are already blanked out
local function js_depth(bare)
  local depth, deepest = 0, 0
  for c in string.gmatch(bare, "[%[%]{}]") do
    if c == "[" or c == "{" then
      depth = depth + 1
      if depth > deepest then deepest = depth end
    else
      depth = depth - 1
    end
  end
  return deepest
end

-- js_valid(text): true when text is one well-formed JSON value. cjson alone would
-- also accept NaN, Infinity and hex numbers, which no JSON reader takes back, so
-- after it parses, the text outside strings may hold only the three literals,
-- structure characters and numbers in JSON's own grammar.
local function js_valid(text, max_depth)
  if type(text) ~= "string" or #text == 0 then return false end
  -- fast paths for the common scalars: an integer, a string with nothing to unescape
  if (string.find(text, "^%-?[1-9]%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?$") or text == "0"
      or text == "true" or text == "false" or text == "null"
      or string.find(text, '^"[^"\\%z\1-\31\128-\255]*"$')) then
    return true
  end
  if not is_utf8(text) or not pcall(cjson.decode, text) then return false end
  local bare = text
  if string.find(text, '"', 1, true) then
    local parts, i = {}, 1
    while i <= #text do
      local q = string.find(text, '"', i, true)
      if not q then
        parts[#parts + 1] = string.sub(text, i)
        break
      end
      parts[#parts + 1] = string.sub(text, i, q - 1)
      i = js_skip_string(text, q)
      -- JSON strings hold no raw control characters (cjson lets them through)
      if string.find(string.sub(text, q, i - 1), "[%z\1-\31]") then return false end
    end
    bare = table.concat(parts, " ")
  end
  if string.find(bare, "[a-df-zA-DF-Z]") then
    bare = string.gsub(bare, "%f[%a]true%f[%A]", "")
    bare = string.gsub(bare, "%f[%a]false%f[%A]", "")
    bare = string.gsub(bare, "%f[%a]null%f[%A]", "")
  end
  if string.find(bare, "[^%d%.eE%+%-,:%[%]{} \t\r\n]") then return false end
  for token in string.gmatch(bare, "[%d%.eE%+%-]+") do
    if not js_number(token) then return false end
  end
  return js_depth(bare) <= (max_depth or LIMIT_JSON_DEPTH)
end

local function js_kind(text)
  local c = string.byte(text, js_ws(text, 1))
  if c == 123 then return "object" end
  if c == 91 then return "array" end
  return "scalar"
end

-- Walk the members of the object that opens at i. Returns, for `key`:
-- found: vstart, vend (exclusive), kstart, after (index of the , or } after the value), prev_comma
-- missing: nil, close (index of the closing }), count
local function js_member(s, i, key)
  local j = js_ws(s, i + 1)
  if string.byte(s, j) == 125 then return nil, j, 0 end
  local prev_comma, count = nil, 0
  while true do
    local kstart = j
    local kend = js_skip_string(s, j)
    local raw = string.sub(s, kstart + 1, kend - 2)
    local name = raw
    if string.find(raw, "\\", 1, true) then name = cjson.decode('"' .. raw .. '"') end
    local vstart = js_ws(s, js_ws(s, kend) + 1)
    local vend = js_skip_value(s, vstart)
    local after = js_ws(s, vend)
    count = count + 1
    if name == key then return vstart, vend, kstart, after, prev_comma end
    if string.byte(s, after) ~= 44 then return nil, after, count end
    prev_comma = after
    j = js_ws(s, after + 1)
  end
end

-- Same for the element `idx` (0-based) of the array that opens at i.
-- missing: nil, close (index of the closing ]), count
local function js_element(s, i, idx)
  local j = js_ws(s, i + 1)
  if string.byte(s, j) == 93 then return nil, j, 0 end
  local prev_comma, n = nil, 0
  while true do
    local vstart = j
    local vend = js_skip_value(s, j)
    local after = js_ws(s, vend)
    if n == idx then return vstart, vend, vstart, after, prev_comma end
    n = n + 1
    if string.byte(s, after) ~= 44 then return nil, after, n end
    prev_comma = after
    j = js_ws(s, after + 1)
  end
end
