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
