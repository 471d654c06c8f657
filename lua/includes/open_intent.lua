-- @include "fail"
-- @include "validate"
-- open_intent(ik, id, fields): the intent's version followed by the named hash fields,
-- or nil and the error reply to return (a malformed id, a key that is not this id's, or
-- an intent that does not exist). Every script that changes an existing intent starts
-- here, before its first write.
local function open_intent(ik, id, fields)
  if not is_id(id) or not key_ends(ik, ":i:" .. id) then
    return nil, fail("INVALID", "malformed intent id", {field = "intent_id"})
  end
  local cur = redis.call("HMGET", ik, "version", unpack(fields))
  if not cur[1] then
    return nil, fail("NOT_FOUND", "intent " .. id .. " does not exist", {id = id})
  end
  return cur
end
