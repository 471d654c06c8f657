--[[
set_dependency: add or remove one dependency edge of an intent (RFC-0002).

Invariants:
  - the version check is on the dependent intent; a closed (completed or abandoned)
    intent's dependencies do not change
  - add: the dependency exists, shares the intent's group, is not the intent itself, is
    not already listed, is not abandoned (unless the intent ignores failed dependencies),
    and does not wait for the intent, directly or transitively, through dependencies or
    children (CYCLE, with the path)
  - the unmet count follows the edge: adding an unmet dependency to an active intent
    blocks it; removing the last unmet one unblocks a blocked intent
  - the edge (depends_on, its mirror, the dependency's dependents), the version, the
    event and any status move go together

KEYS:
  [1] intent      hash   {ns:p}:i:<id>
  [2] state       hash   {ns:p}:s:<id>
  [3] events      stream {ns:p}:e:<id>
  [4] bus         stream {ns:p}:bus
  [5] ix_draft      zset   {ns:p}:x:s:draft
  [6] ix_active     zset   {ns:p}:x:s:active
  [7] ix_blocked    zset   {ns:p}:x:s:blocked
  [8] ix_suspended  zset   {ns:p}:x:s:suspended_awaiting_input
  [9] ix_completed  zset   {ns:p}:x:s:completed
  [10] ix_abandoned  zset   {ns:p}:x:s:abandoned
  [11] g_status     hash   {ns:p}:g:st (id -> status)
  [12] g_unmet      hash   {ns:p}:g:um (id -> unmet dependencies)
  [13] g_counts     hash   {ns:p}:g:ag (parent:status -> children)
  [14] g_deps       hash   {ns:p}:g:dep (id -> depends_on JSON)
  [15] g_dependents hash   {ns:p}:g:rd (id -> dependents JSON)
  [16] g_parents    hash   {ns:p}:g:par (child id -> parent id)

ARGV:
  [1] op          "add" or "remove"
  [2] id          the dependent intent
  [3] dependency  the intent it depends on
  [4] version     the version the caller read, or "" to skip the check
  [5] actor       who changes it

Returns: {the intent as JSON (includes/snapshot.lua), moves (as set_status returns them)}
Errors: INVALID, TOO_LARGE, NOT_FOUND, CONFLICT, CLOSED, EXISTS, CYCLE
Events: dependency_added, dependency_removed, status_changed
]]
-- @include "fail"
-- @include "validate"
-- @include "limits"
-- @include "open_intent"
-- @include "graph"
-- @include "snapshot"

local rcall = redis.call
local ik, sk, ek = KEYS[1], KEYS[2], KEYS[3]
local op, id, dep, expected, actor = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local bad_actor = check_actor(actor)
if bad_actor then return bad_actor end
if op ~= "add" and op ~= "remove" then
  return fail("INVALID", "op must be add or remove", {field = "op"})
end
local G = graph_ctx(4)
if G == nil or #KEYS ~= 16 then return bad_graph_keys() end
local cur, err = open_intent(ik, id, {"status", "depends_on", "on_dep_fail"})
if cur == nil then return err end
if not (key_ends(sk, ":s:" .. id) and key_ends(ek, ":e:" .. id)) then
  return fail("INVALID", "keys do not match the intent id", {field = "keys"})
end
if not is_id(dep) or dep == id then
  return fail("INVALID", "dependency_id must be another intent's id", {field = "dependency_id"})
end
if group_of(dep) ~= group_of(id) then
  return fail("INVALID", "dependency " .. dep .. " is in another group: an intent and its "
    .. "dependencies share a group (the id up to its first \".\")", {field = "dependency_id"})
end
local version, status, policy = tonumber(cur[1]), cur[2], cur[4] or "block"
if expected ~= "" and tonumber(expected) ~= version then
  return fail("CONFLICT", "intent " .. id .. " is at version " .. version .. ", not " .. expected,
    {current_version = version})
end
if TERMINAL[status] then
  return fail("CLOSED", "intent " .. id .. " is " .. status .. " and its dependencies no longer change",
    {status = status})
end
local deps = cjson.decode(cur[3])
local at_index
for n = 1, #deps do
  if deps[n] == dep then at_index = n end
end
local dep_status = rcall("HGET", G.st, dep)
if not dep_status then
  return fail("NOT_FOUND", "dependency " .. dep .. " does not exist", {id = dep})
end

local unmet, to, reason = unmet_of(G, id), nil, ""
local dependents = id_list(G.rd, dep)
if op == "add" then
  if at_index then
    return fail("EXISTS", "intent " .. id .. " already depends on " .. dep, {field = "dependency_id"})
  end
  if #deps >= LIMIT_DEPENDS_ON then
    return fail("TOO_LARGE", "an intent depends on at most " .. LIMIT_DEPENDS_ON .. " intents",
      {field = "dependency_id", limit = LIMIT_DEPENDS_ON})
  end
  if dep_status == "abandoned" and policy ~= "ignore" then
    return fail("INVALID", "dependency " .. dep .. " is abandoned", {field = "dependency_id"})
  end
  if #dependents >= LIMIT_DEPENDENTS then
    return fail("TOO_LARGE", "intent " .. dep .. " already has " .. LIMIT_DEPENDENTS .. " dependents",
      {field = "dependency_id", limit = LIMIT_DEPENDENTS})
  end
  local cycle = cycle_error(id, find_waiting(G, id, {[dep] = true}), "dependency_id")
  if cycle then return cycle end
  deps[#deps + 1] = dep
  dependents[#dependents + 1] = id
  if edge_counts(dep_status, policy) then
    unmet = unmet + 1
    if status == "active" then to, reason = "blocked", "dependency " .. dep .. " added" end
  end
else
  if not at_index then
    return fail("NOT_FOUND", "intent " .. id .. " does not depend on " .. dep,
      {resource = "dependency", id = dep})
  end
  table.remove(deps, at_index)
  for n = #dependents, 1, -1 do
    if dependents[n] == id then table.remove(dependents, n) end
  end
  if edge_counts(dep_status, policy) then
    unmet = unmet - 1
    if unmet == 0 and status == "blocked" then to, reason = "active", "dependencies satisfied" end
  end
end

-- all checks passed: write
local at = now_us()
local deps_json = "[]"
if #deps > 0 then deps_json = cjson.encode(deps) end
set_id_list(G.dep, id, deps)
set_id_list(G.rd, dep, dependents)
if unmet > 0 then rcall("HSET", G.um, id, unmet) else rcall("HDEL", G.um, id) end
version = version + 1
rcall("HSET", ik, "depends_on", deps_json, "version", version, "updated_at", iso_time(at))
emit(ik, ek, G.bk, id, "dependency_" .. (op == "add" and "added" or "removed"), actor,
  '{"dependency_id":' .. cjson.encode(dep) .. ',"version":' .. version .. "}", at)
local moves = "[]"
if to then
  moves = "[" .. apply_move(G, {id = id, from = status, to = to, reason = reason},
    {ik = ik, ek = ek}, actor, at) .. "]"
end
return {snapshot(ik, sk), moves}
