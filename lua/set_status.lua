--[[
set_status: move an intent through its lifecycle (RFC-0001/0002), with the moves its graph
makes follow in the same script.

Invariants:
  - only the transitions in includes/statuses.lua are allowed; completed and abandoned
    are terminal; a forbidden or same-status move is TRANSITION and writes nothing
  - a given expected version must equal the current one
  - completion gates: an intent with a dependency or a child that is not completed
    cannot complete (GATED); a move to active while dependencies are unmet lands in
    blocked (from blocked itself it is GATED)
  - the cascade (dependents unblocked once, dependency failure policies, abandoned
    children) is planned in full before the first write; when it reaches intents whose
    keys were not given, nothing is written and their ids are returned instead
  - each moved intent's status, index entry, mirror, parent counts, version and
    status_changed go together

KEYS:
  [1] intent     hash   {ns:p}:i:<id>
  [2] state      hash   {ns:p}:s:<id>
  [3] events     stream {ns:p}:e:<id>
  [4] children   zset   {ns:p}:x:p:<id>
  [5] bus         stream {ns:p}:bus
  [6] ix_draft      zset   {ns:p}:x:s:draft
  [7] ix_active     zset   {ns:p}:x:s:active
  [8] ix_blocked    zset   {ns:p}:x:s:blocked
  [9] ix_suspended  zset   {ns:p}:x:s:suspended_awaiting_input
  [10] ix_completed  zset   {ns:p}:x:s:completed
  [11] ix_abandoned  zset   {ns:p}:x:s:abandoned
  [12] g_status     hash   {ns:p}:g:st (id -> status)
  [13] g_unmet      hash   {ns:p}:g:um (id -> unmet dependencies)
  [14] g_counts     hash   {ns:p}:g:ag (parent:status -> children)
  [15] g_deps       hash   {ns:p}:g:dep (id -> depends_on JSON)
  [16] g_dependents hash   {ns:p}:g:rd (id -> dependents JSON)
  [17] g_parents    hash   {ns:p}:g:par (child id -> parent id)
  [18+] related  3 keys per id of ARGV[6]: {ns:p}:i:<r>, {ns:p}:e:<r>, {ns:p}:x:p:<r>

ARGV:
  [1] id        the intent id
  [2] version   the version the caller read, or "" to skip the check
  [3] status    the new status
  [4] reason    free text recorded in the event ("" for none)
  [5] actor     who changes it
  [6] related   JSON list of the other intents whose keys are given (may be [])

Returns: {the intent as JSON (includes/snapshot.lua), moves} where moves is a JSON array
  with one array (id, status, version, portfolio ids) for every intent whose status
  changed (see bus/moves.py); or {false, JSON list of ids} when the cascade needs the
  keys of those intents too (nothing written)
Errors: INVALID, TOO_LARGE, NOT_FOUND, CONFLICT, TRANSITION, GATED
Events: status_changed, dependency_failed
]]
-- @include "fail"
-- @include "validate"
-- @include "limits"
-- @include "statuses"
-- @include "open_intent"
-- @include "graph"
-- @include "snapshot"

local ik, sk = KEYS[1], KEYS[2]
local id, expected, to, reason, actor = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local bad_actor = check_actor(actor)
if bad_actor then return bad_actor end

if status_index(to) == nil then
  return fail("INVALID", "unknown status " .. tostring(to) .. "; one of " .. table.concat(STATUSES, ", "),
    {field = "status"})
end
local G = graph_ctx(5)
if G == nil then return bad_graph_keys() end
local ok_rel, related = pcall(cjson.decode, ARGV[6])
if not ok_rel or type(related) ~= "table" or #KEYS ~= 17 + 3 * #related then
  return fail("INVALID", "related must be a JSON list with three keys per id", {field = "keys"})
end
local bad_reason = check_note(reason, "reason", LIMIT_TEXT_BYTES)
if bad_reason then return bad_reason end
local cur, err = open_intent(ik, id, {"status", "on_dep_fail"})
if cur == nil then return err end
if not (key_ends(sk, ":s:" .. id) and key_ends(KEYS[3], ":e:" .. id)
    and key_ends(KEYS[4], ":x:p:" .. id)) then
  return fail("INVALID", "keys do not match the intent id", {field = "keys"})
end
local declared = {[id] = {ik = ik, ek = KEYS[3], xpk = KEYS[4]}}
for n = 1, #related do
  local r, base = related[n], 17 + 3 * (n - 1)
  if not is_id(r) or group_of(r) ~= group_of(id) or not key_ends(KEYS[base + 1], ":i:" .. r)
      or not key_ends(KEYS[base + 2], ":e:" .. r) or not key_ends(KEYS[base + 3], ":x:p:" .. r) then
    return fail("INVALID", "related keys do not match their ids", {field = "keys"})
  end
  declared[r] = {ik = KEYS[base + 1], ek = KEYS[base + 2], xpk = KEYS[base + 3]}
end

local version, from, policy = tonumber(cur[1]), cur[2], cur[3] or "block"
if expected ~= "" and tonumber(expected) ~= version then
  return fail("CONFLICT", "intent " .. id .. " is at version " .. version .. ", not " .. expected,
    {current_version = version})
end
if to == "completed" then
  local held, unmet = unmet_of(G, id), {}
  if held > 0 then unmet = unmet_list(G, id, policy) end
  local open, names = open_children(G, KEYS[4], id)
  if TRANSITIONS[from][to] and (held > 0 or open > 0) then
    local why = {}
    if held > 0 then why[#why + 1] = held .. " dependencies (" .. table.concat(unmet, ", ") .. ")" end
    if open > 0 then why[#why + 1] = open .. " children" end
    return fail("GATED", "intent " .. id .. " cannot complete before its "
      .. table.concat(why, " and ") .. " complete",
      {from_status = from, to_status = to, unmet_dependencies = unmet, open_children = names,
       open_children_count = open})
  end
elseif to == "active" and unmet_of(G, id) > 0 then
  if from == "blocked" then
    local unmet = unmet_list(G, id, policy)
    return fail("GATED", "intent " .. id .. " waits for " .. #unmet .. " dependencies ("
      .. table.concat(unmet, ", ") .. ")",
      {from_status = from, to_status = to, unmet_dependencies = unmet, open_children = {},
       open_children_count = 0})
  end
  to = "blocked"
  if reason == "" then reason = "dependencies not satisfied" end
end
if not TRANSITIONS[from][to] then
  return fail("TRANSITION", "cannot move intent " .. id .. " from " .. from .. " to " .. to,
    {from_status = from, to_status = to})
end

local result, failed, needed = plan_cascade(G, declared, {id = id, from = from, to = to, reason = reason})
if failed then return failed end
if needed then return {false, cjson.encode(needed)} end
local moves = apply_plan(G, result, declared, actor, now_us())
return {snapshot(ik, sk), moves}
