-- @include "validate"
-- Subscription limits and layout (RFC-0006). bus/subscriptions.py checks the same numbers
-- first; a test keeps the two equal.
local SUBS_MAX = 10000
local SUBS_PER_SCOPE = 1000
local SUBS_URL_BYTES = 2048

-- sub_index_suffix(kind, scope): how the index key of a scope ends ("i" intent, "p"
-- portfolio, "g" global), so a script can check the key its caller declared
local function sub_index_suffix(kind, scope)
  if kind == "g" then return ":subs:x:g" end
  return ":subs:x:" .. kind .. ":" .. scope
end

-- sub_scope(record): the kind and id of a decoded record's scope (cjson reads null as a
-- sentinel, not nil, so only strings count)
local function sub_scope(record)
  if type(record.intent_id) == "string" then return "i", record.intent_id end
  if type(record.portfolio_id) == "string" then return "p", record.portfolio_id end
  return "g", ""
end

-- sub_types_ok(v): the record's event_types is null or a list of 1-64 distinct texts of at
-- most 64 bytes (what bus/subscriptions.py sends; the daemon decodes it strictly)
local function sub_types_ok(v)
  if v == cjson.null then return true end
  if type(v) ~= "table" or #v < 1 or #v > 64 then return false end
  local seen = {}
  for n = 1, #v do
    if not is_text(v[n], 64) or seen[v[n]] then return false end
    seen[v[n]] = true
  end
  local count = 0
  for _ in pairs(v) do count = count + 1 end
  return count == #v
end
