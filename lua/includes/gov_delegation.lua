-- @include "fail"
-- @include "validate"
-- @include "gov_records"
-- Delegation contracts (RFC-0003) are namespace-wide, not tied to one intent: one hash
-- {ns}:dg (id -> record JSON) and one event stream {ns}:dge whose entries have the fields
-- of an intent's log except the sequence number: t type, a actor, p payload, at µs, and
-- d the delegation id.

local GOV_SCOPE_ITEMS = 256  -- entries of each scope list (bus/governance.py)
local GOV_TIME_MAX = 9000000000000000  -- µs (year 2255): below 2^53, exact as a Lua number

-- gov_scope(text): nil when text is {"intents": [ids], "actions": [names]} (either list
-- may be missing or empty, not both), else the error reply
local function gov_scope(text)
  local bad = gov_json(text, "object", "scope")
  if bad then return bad end
  local scope = cjson.decode(text)
  local total = 0
  for key, list in pairs(scope) do
    if key ~= "intents" and key ~= "actions" then
      return fail("INVALID", "scope holds only intents and actions", {field = "scope"})
    end
    if type(list) ~= "table" or #list > GOV_SCOPE_ITEMS then
      return fail("INVALID", "scope." .. key .. " must be a list of at most " .. GOV_SCOPE_ITEMS
        .. " entries", {field = "scope"})
    end
    local n = 0
    for _ in pairs(list) do n = n + 1 end
    if n ~= #list then
      return fail("INVALID", "scope." .. key .. " must be a list", {field = "scope"})
    end
    for i = 1, #list do
      local ok = (key == "intents" and is_id(list[i]))
        or (key == "actions" and is_text(list[i], 128))
      if not ok then
        return fail("INVALID", "scope." .. key .. "[" .. (i - 1) .. "] must be "
          .. (key == "intents" and "an intent id" or "an action name of at most 128 bytes"),
          {field = "scope"})
      end
    end
    total = total + #list
  end
  if total == 0 then
    return fail("INVALID", "scope names no intents and no actions", {field = "scope"})
  end
  return nil
end

local function gov_delegation_event(ek, etype, actor, dg_id, payload, at)
  return redis.call("XADD", ek, "*", "t", etype, "a", actor, "p", payload, "at", int(at),
    "d", dg_id)
end
