--[[
create_intent: create an intent, or return the existing one when the same create is retried.

Invariants:
  - idempotent: if the id exists and its stored digest equals ARGV digest, nothing is
    written and the existing intent is returned (created = 0); a different create under
    the same id is EXISTS and writes nothing
  - every input is checked here before the first write; version starts at 1
  - the intent, its indexes and its intent_created event are written together
  - graphs stay in one group: the parent and every dependency must exist, share the
    id's group and be open (a parent, with fewer than LIMIT_CHILDREN children) or not
    abandoned (a dependency with fewer than LIMIT_DEPENDENTS dependents, unless its
    policy is to ignore failed dependencies); an intent asked to start active with unmet
    dependencies starts blocked; a child cannot depend on what waits for its parent
    (CYCLE: its parent waits for it)

KEYS:
  [1] intent      hash   {ns:p}:i:<id>
  [2] state       hash   {ns:p}:s:<id>
  [3] events      stream {ns:p}:e:<id>
  [4] ix_all      zset   {ns:p}:x:all
  [5] ix_creator  zset   {ns:p}:x:c:<created_by>
  [6] ix_parent   zset   {ns:p}:x:p:<parent_intent_id> (without a parent: {ns:p}:x:p:<id>, unused)
  [7] bus         stream {ns:p}:bus
  [8] ix_draft      zset   {ns:p}:x:s:draft
  [9] ix_active     zset   {ns:p}:x:s:active
  [10] ix_blocked    zset   {ns:p}:x:s:blocked
  [11] ix_suspended  zset   {ns:p}:x:s:suspended_awaiting_input
  [12] ix_completed  zset   {ns:p}:x:s:completed
  [13] ix_abandoned  zset   {ns:p}:x:s:abandoned
  [14] g_status     hash   {ns:p}:g:st (id -> status)
  [15] g_unmet      hash   {ns:p}:g:um (id -> unmet dependencies)
  [16] g_counts     hash   {ns:p}:g:ag (parent:status -> children)
  [17] g_deps       hash   {ns:p}:g:dep (id -> depends_on JSON)
  [18] g_dependents hash   {ns:p}:g:rd (id -> dependents JSON)
  [19] g_parents    hash   {ns:p}:g:par (child id -> parent id)

ARGV:
  [1] id           the intent id (generated or chosen by the caller)
  [2] spec         JSON object: title, description?, created_by, status, confidence?,
                   parent_intent_id?, depends_on (list of ids), on_dependency_failure
                   (block|abandon|ignore), cascade_abandon (bool), assign (agent id)?
  [3] constraints  JSON object text, stored verbatim
  [4] state        JSON list of [top-level key, JSON value text] pairs
  [5] digest       fingerprint of the create request, for idempotent retries
  [6] actor        who creates it

Returns: {created (1|0), the intent as JSON (includes/snapshot.lua)}
Errors: INVALID, TOO_LARGE, EXISTS, NOT_FOUND, CLOSED, CYCLE
Events: intent_created, agent_assigned
]]
-- @include "fail"
-- @include "now_us"
-- @include "iso_time"
-- @include "limits"
-- @include "validate"
-- @include "json_text"
-- @include "graph"
-- @include "snapshot"

local rcall = redis.call
local ik, sk, ek = KEYS[1], KEYS[2], KEYS[3]
local ix_all, ix_creator, ix_parent = KEYS[4], KEYS[5], KEYS[6]
local id, digest, actor = ARGV[1], ARGV[5], ARGV[6]

local bad_actor = check_actor(actor)
if bad_actor then return bad_actor end
if not is_id(id) or not key_ends(ik, ":i:" .. id) then
  return fail("INVALID", "id must be 1-128 characters of A-Z a-z 0-9 . _ ~ -", {field = "id"})
end
if rcall("EXISTS", ik) == 1 then
  if rcall("HGET", ik, "digest") == digest then
    return {0, snapshot(ik, sk)}
  end
  return fail("EXISTS", "intent " .. id .. " already exists with different content",
    {field = "id", id = id})
end

local spec = decode_object(ARGV[2])
if spec == nil then return fail("INVALID", "spec must be a JSON object", {field = "spec"}) end
if not is_text(spec.title, LIMIT_TITLE_BYTES) then
  return fail("INVALID", "title must be a non-empty string of at most "
    .. LIMIT_TITLE_BYTES .. " bytes", {field = "title"})
end
local description = spec.description
if description ~= nil and not (type(description) == "string" and #description <= LIMIT_TEXT_BYTES
    and is_utf8(description)) then
  return fail("INVALID", "description must be a string of at most "
    .. LIMIT_TEXT_BYTES .. " bytes", {field = "description"})
end
if not is_text(spec.created_by, 256) then
  return fail("INVALID", "created_by must be a non-empty string of at most 256 bytes",
    {field = "created_by"})
end
if not key_ends(ix_creator, ":x:c:" .. key_segment(spec.created_by)) then
  return fail("INVALID", "creator index key does not match created_by", {field = "created_by"})
end
local status = spec.status
if status ~= "draft" and status ~= "active" then
  return fail("INVALID", "an intent is created as draft or active", {field = "status"})
end
local G = graph_ctx(7)
if G == nil then return bad_graph_keys() end
local confidence = spec.confidence
if confidence ~= nil and not (type(confidence) == "number" and confidence == math.floor(confidence)
    and confidence >= 0 and confidence <= 100) then
  return fail("INVALID", "confidence must be an integer from 0 to 100", {field = "confidence"})
end
local parent = spec.parent_intent_id
if parent ~= nil then
  if not is_id(parent) or parent == id then
    return fail("INVALID", "parent_intent_id must be another intent's id", {field = "parent_intent_id"})
  end
  if not key_ends(ix_parent, ":x:p:" .. parent) then
    return fail("INVALID", "parent index key does not match parent_intent_id",
      {field = "parent_intent_id"})
  end
  if group_of(parent) ~= group_of(id) then
    return fail("INVALID", "a child must share its parent's group (the id up to its first "
      .. "\".\"): create it with parent_intent_id and no other colocation", {field = "parent_intent_id"})
  end
  local parent_status = redis.call("HGET", G.st, parent)
  if not parent_status then
    return fail("NOT_FOUND", "parent intent " .. parent .. " does not exist", {id = parent})
  end
  if TERMINAL[parent_status] then
    return fail("CLOSED", "parent intent " .. parent .. " is " .. parent_status
      .. " and takes no new children", {status = parent_status})
  end
  if redis.call("ZCARD", ix_parent) >= LIMIT_CHILDREN then
    return fail("TOO_LARGE", "intent " .. parent .. " already has " .. LIMIT_CHILDREN .. " children",
      {field = "parent_intent_id", limit = LIMIT_CHILDREN})
  end
elseif not key_ends(ix_parent, ":x:p:" .. id) then
  return fail("INVALID", "parent index key does not match the id", {field = "parent_intent_id"})
end
local deps = spec.depends_on
if type(deps) ~= "table" or #deps > LIMIT_DEPENDS_ON then
  return fail("INVALID", "depends_on must be a list of at most " .. LIMIT_DEPENDS_ON .. " ids",
    {field = "depends_on"})
end
local policy = spec.on_dependency_failure
if policy ~= "block" and policy ~= "abandon" and policy ~= "ignore" then
  return fail("INVALID", "on_dependency_failure must be block, abandon or ignore",
    {field = "on_dependency_failure"})
end
if type(spec.cascade_abandon) ~= "boolean" then
  return fail("INVALID", "cascade_abandon must be true or false", {field = "cascade_abandon"})
end
local assign = spec.assign
if assign ~= nil and not is_text(assign, 256) then
  return fail("INVALID", "assign must be a non-empty string of at most 256 bytes", {field = "assign"})
end
if #KEYS ~= 19 then
  return fail("INVALID", "expected 19 keys", {field = "keys"})
end
local unmet, listed, dependents = 0, {}, {}
for n = 1, #deps do
  local dep = deps[n]
  if not is_id(dep) or dep == id then
    return fail("INVALID", "depends_on[" .. (n - 1) .. "] must be another intent's id",
      {field = "depends_on"})
  end
  if listed[dep] then
    return fail("INVALID", "depends_on lists " .. dep .. " twice", {field = "depends_on"})
  end
  listed[dep] = true
  if group_of(dep) ~= group_of(id) then
    return fail("INVALID", "dependency " .. dep .. " is in another group: an intent and its "
      .. "dependencies share a group (the id up to its first \".\")", {field = "depends_on"})
  end
  local dep_status = redis.call("HGET", G.st, dep)
  if not dep_status then
    return fail("NOT_FOUND", "dependency " .. dep .. " does not exist", {id = dep})
  end
  if dep_status == "abandoned" and policy ~= "ignore" then
    return fail("INVALID", "dependency " .. dep .. " is abandoned", {field = "depends_on"})
  end
  dependents[n] = id_list(G.rd, dep)
  if #dependents[n] >= LIMIT_DEPENDENTS then
    return fail("TOO_LARGE", "intent " .. dep .. " already has " .. LIMIT_DEPENDENTS .. " dependents",
      {field = "depends_on", limit = LIMIT_DEPENDENTS})
  end
  if edge_counts(dep_status, policy) then unmet = unmet + 1 end
end
if parent ~= nil and #deps > 0 then
  -- the parent will wait for the new intent, which will wait for its dependencies
  local cycle = cycle_error(id, find_waiting(G, parent, listed), "depends_on")
  if cycle then return cycle end
end
if status == "active" and unmet > 0 then status = "blocked" end
local constraints = ARGV[3]
if #constraints > LIMIT_TEXT_BYTES then
  return fail("TOO_LARGE", "constraints are over " .. LIMIT_TEXT_BYTES .. " bytes",
    {field = "constraints", limit = LIMIT_TEXT_BYTES, size = #constraints})
end
if constraints ~= "{}" and (not js_valid(constraints) or js_kind(constraints) ~= "object") then
  return fail("INVALID", "constraints must be a JSON object", {field = "constraints"})
end
local ok, pairs_ = pcall(cjson.decode, ARGV[4])
if not ok or type(pairs_) ~= "table" then
  return fail("INVALID", "state must be a JSON object", {field = "state"})
end
local flat, size, seen, state_items = {}, 0, {}, {}
for n = 1, #pairs_ do
  local key, text = pairs_[n][1], pairs_[n][2]
  if type(key) ~= "string" or seen[key] or not is_utf8(key) or not js_valid(text) then
    return fail("INVALID", "state entry " .. n .. " is not a unique key with a JSON value",
      {field = "state"})
  end
  seen[key] = true
  size = size + #key + #text
  flat[#flat + 1] = key
  flat[#flat + 1] = text
  state_items[#state_items + 1] = cjson.encode(key) .. ":" .. text
end
if size > LIMIT_STATE_BYTES then
  return fail("TOO_LARGE", "state is over " .. LIMIT_STATE_BYTES .. " bytes",
    {field = "state", limit = LIMIT_STATE_BYTES, size = size})
end

-- all checks passed: write
local at = now_us()
local stamp = iso_time(at)
local deps_json = "[]"
if #deps > 0 then deps_json = cjson.encode(deps) end
local agents_json = "[]"
if assign ~= nil then agents_json = cjson.encode({assign}) end
local fields = {"id", id, "title", spec.title, "created_by", spec.created_by, "status", status,
  "constraints", constraints, "version", "1", "created_us", int(at), "created_at", stamp,
  "updated_at", stamp,
  "depends_on", deps_json, "agents", agents_json, "seq", "0", "ssize", size, "digest", digest,
  "on_dep_fail", policy, "cascade", spec.cascade_abandon and "1" or "0"}
if description ~= nil then
  fields[#fields + 1] = "description"
  fields[#fields + 1] = description
end
if confidence ~= nil then
  fields[#fields + 1] = "confidence"
  fields[#fields + 1] = int(confidence)
end
if parent ~= nil then
  fields[#fields + 1] = "parent_intent_id"
  fields[#fields + 1] = parent
end
rcall("HSET", ik, unpack(fields))
-- in batches: Lua's unpack() has a limit, and a failure here would leave half an intent
for first = 1, #flat, 2 * LIMIT_BATCH do
  rcall("HSET", sk, unpack(flat, first, math.min(first + 2 * LIMIT_BATCH - 1, #flat)))
end

local member = string.format("%016.0f", at) .. ":" .. id
rcall("ZADD", ix_all, 0, member)
rcall("ZADD", G.ix[status], 0, member)
rcall("ZADD", ix_creator, 0, member)
rcall("HSET", G.st, id, status)
if unmet > 0 then rcall("HSET", G.um, id, unmet) end
-- the graph hashes hold nothing for an id that did not exist (a missing field reads as
-- empty), so an intent without dependencies or parent writes only its status mirror
if #deps > 0 then
  rcall("HSET", G.dep, id, deps_json)
  for n = 1, #deps do
    dependents[n][#dependents[n] + 1] = id
    set_id_list(G.rd, deps[n], dependents[n])
  end
end
if parent ~= nil then
  rcall("HSET", G.par, id, parent)
  rcall("ZADD", ix_parent, 0, member)
  rcall("HINCRBY", G.ag, parent .. ":" .. status, 1)
end

local payload = {'{"title":', cjson.encode(spec.title), ',"status":"', status,
  '","created_by":', cjson.encode(spec.created_by), ',"constraints":', constraints,
  ',"depends_on":', deps_json, ',"state":{', table.concat(state_items, ","), '}'}
if parent ~= nil then payload[#payload + 1] = ',"parent_intent_id":' .. cjson.encode(parent) end
payload[#payload + 1] = "}"
emit(ik, ek, G.bk, id, "intent_created", actor, table.concat(payload), at)
if assign ~= nil then
  emit(ik, ek, G.bk, id, "agent_assigned", actor,
    '{"agent_id":' .. cjson.encode(assign) .. ',"version":1}', at, assign)
end

-- the reply is what was just written (snapshot() would read it back): the same document
return {1, intent_json({id, spec.title, description or false, spec.created_by, status,
  constraints, confidence ~= nil and int(confidence) or false, "1", stamp, stamp,
  parent or false, deps_json, agents_json, policy, spec.cascade_abandon and "1" or "0"},
  state_items)}
