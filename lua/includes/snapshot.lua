-- The intent as one JSON document: the reply every intent-returning script shares. Built
-- here because the stored JSON fields (constraints, state values, depends_on, agents) are
-- already JSON text: the client then makes the record with one decode instead of
-- rebuilding it field by field.

-- intent_json(f, items): the document from the intent hash's fields in snapshot()'s HMGET
-- order (false where a field is absent) and the state as "<key JSON>:<value JSON>" items.
-- A script that has just written the intent (create_intent) passes what it wrote, so its
-- reply costs no read back and is the same document a later snapshot() gives.
local function intent_json(f, items)
  local out = {'{"id":', cjson.encode(f[1]), ',"title":', cjson.encode(f[2])}
  if f[3] then
    out[#out + 1] = ',"description":'
    out[#out + 1] = cjson.encode(f[3])
  end
  out[#out + 1] = ',"created_by":' .. cjson.encode(f[4]) .. ',"status":"' .. f[5]
    .. '","constraints":' .. f[6]
  if f[7] then out[#out + 1] = ',"confidence":' .. f[7] end
  out[#out + 1] = ',"version":' .. f[8] .. ',"created_at":"' .. f[9]
    .. '","updated_at":"' .. f[10] .. '"'
  if f[11] then out[#out + 1] = ',"parent_intent_id":' .. cjson.encode(f[11]) end
  out[#out + 1] = ',"depends_on":' .. f[12] .. ',"assigned_agents":' .. f[13]
    .. ',"on_dependency_failure":"' .. (f[14] or "block") .. '","cascade_abandon":'
    .. (f[15] == "0" and "false" or "true") .. ',"state":{'
  out[#out + 1] = table.concat(items, ",")
  out[#out + 1] = "}}"
  return table.concat(out)
end

-- snapshot(ik, sk): the document of a stored intent, or false when it does not exist
local function snapshot(ik, sk)
  local f = redis.call("HMGET", ik, "id", "title", "description", "created_by", "status",
    "constraints", "confidence", "version", "created_at", "updated_at", "parent_intent_id",
    "depends_on", "agents", "on_dep_fail", "cascade")
  if not f[1] then return false end
  local s = redis.call("HGETALL", sk)
  local items = {}
  for n = 1, #s, 2 do items[#items + 1] = cjson.encode(s[n]) .. ":" .. s[n + 1] end
  return intent_json(f, items)
end
