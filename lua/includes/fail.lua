-- fail(code, message, details_json): abort the script with a typed error and no writes.
-- Callers must only call fail() before their first write: this is how "bad input
-- changes nothing" is kept (Redis does not roll back a script's earlier writes).
-- The reply is "OIBUS <CODE> <json>"; bus/codes.py maps CODE to an exception.
local function fail(code, message, details)
  local d = details or {}
  d["message"] = message
  return redis.error_reply("OIBUS " .. code .. " " .. cjson.encode(d))
end
