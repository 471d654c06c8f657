-- @include "fail"
-- @include "limits"
-- @include "now_us"
-- @include "iso_time"
-- @include "statuses"
-- @include "emit"
-- Intent graphs (RFC-0002) inside one partition. A graph never leaves its group (the id up
-- to its first "."), so every intent it touches is in this slot; what a script reads of
-- intents it was not given keys for comes from the partition's graph hashes:
--   G.st  id -> status           (every intent; the mirror of the intent hash's status)
--   G.um  id -> unmet count      (dependencies that still hold the intent back; absent = 0)
--   G.ag  "<parent>:<status>"    -> number of that parent's children in that status
--   G.dep id -> depends_on JSON  (its dependencies)
--   G.rd  id -> dependents JSON  (the intents depending on it; the reverse index)
--   G.par id -> parent id        (children only)
-- Per intent: x:p:<id> (zset, its children: the listing index).
-- An intent whose status a cascade changes must be declared by the caller (its keys in
-- KEYS); a plan that reaches an undeclared one is not applied: the script returns the ids
-- it needs and the client calls again with them (scripts touch only the keys they are given).

local function group_of(id)
  return string.match(id, "^[^.]*")
end

-- graph_ctx(first): the partition keys, in the order every graph script declares them:
-- bus, the six status indexes, st, um, ag, dep, rd, par (KEYS[first .. first + 12]).
local function graph_ctx(first)
  local G = {bk = KEYS[first], ix = {}}
  for n = 1, #STATUSES do
    local key = KEYS[first + n]
    if not key_ends(key, ":x:s:" .. STATUSES[n]) then return nil end
    G.ix[STATUSES[n]] = key
  end
  local k = first + #STATUSES
  G.st, G.um, G.ag, G.dep = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  G.rd, G.par = KEYS[k + 5], KEYS[k + 6]
  if not (key_ends(G.st, ":g:st") and key_ends(G.um, ":g:um") and key_ends(G.ag, ":g:ag")
      and key_ends(G.dep, ":g:dep") and key_ends(G.rd, ":g:rd") and key_ends(G.par, ":g:par")) then
    return nil
  end
  return G
end

local function bad_graph_keys()
  return fail("INVALID", "graph keys are missing or out of order", {field = "keys"})
end

-- id_list(hash, id): the JSON list of ids stored under id (dependencies or dependents)
local function id_list(hash, id)
  local text = redis.call("HGET", hash, id)
  if not text then return {} end
  return cjson.decode(text)
end

-- set_id_list(hash, id, ids): store the list, or drop the field when it is empty (cjson
-- would write an empty table as {})
local function set_id_list(hash, id, ids)
  if #ids == 0 then
    redis.call("HDEL", hash, id)
  else
    redis.call("HSET", hash, id, cjson.encode(ids))
  end
end

local function unmet_of(G, id)
  return tonumber(redis.call("HGET", G.um, id) or "0")
end

-- an edge holds its dependent back while the dependency is not completed, except an
-- abandoned dependency of an intent whose policy is to ignore failed dependencies
local function edge_counts(dep_status, policy)
  if dep_status == "completed" then return false end
  return not (dep_status == "abandoned" and policy == "ignore")
end

-- unmet_list(G, id, policy): the dependencies that hold id back (for error details)
local function unmet_list(G, id, policy)
  local out = {}
  local deps = id_list(G.dep, id)
  for n = 1, #deps do
    if edge_counts(redis.call("HGET", G.st, deps[n]), policy) then out[#out + 1] = deps[n] end
  end
  return out
end

-- open_children(G, xpk, id): how many children are not completed (from the counts), and
-- up to 20 of them (reading at most LIMIT_CASCADE index entries for the names)
local function open_children(G, xpk, id)
  local counts = redis.call("HMGET", G.ag, id .. ":draft", id .. ":active", id .. ":blocked",
    id .. ":suspended_awaiting_input", id .. ":abandoned")
  local open = 0
  for n = 1, #counts do open = open + tonumber(counts[n] or "0") end
  local names = {}
  if open > 0 then
    local members = redis.call("ZRANGE", xpk, 0, LIMIT_CASCADE - 1)
    for n = 1, #members do
      local cid = string.sub(members[n], 18)
      if redis.call("HGET", G.st, cid) ~= "completed" then
        names[#names + 1] = cid
        if #names == 20 then break end
      end
    end
  end
  return open, names
end

-- find_waiting(G, start, targets): the first of `targets` (a set) that waits for `start`,
-- directly or transitively, as the chain {target, ..., start} in which each intent waits
-- for the next; nil when none does; false when the walk passed LIMIT_GRAPH_WALK intents.
-- An intent waits for its dependencies and a parent for its children (RFC-0002's gates),
-- so the walk goes from `start` to its dependents and its parent, and on. Making
-- `start` wait for a target that already waits for it would close a cycle in which no
-- intent could ever complete.
local function find_waiting(G, start, targets)
  local came_from, queue, head = {[start] = false}, {start}, 1
  while head <= #queue do
    local node = queue[head]
    head = head + 1
    if targets[node] then
      local chain = {}
      while node do
        chain[#chain + 1] = node
        node = came_from[node]
      end
      return chain
    end
    if head > LIMIT_GRAPH_WALK then return false end
    local next_nodes = id_list(G.rd, node)
    local parent = redis.call("HGET", G.par, node)
    if parent then next_nodes[#next_nodes + 1] = parent end
    for n = 1, #next_nodes do
      if came_from[next_nodes[n]] == nil then
        came_from[next_nodes[n]] = node
        queue[#queue + 1] = next_nodes[n]
      end
    end
  end
  return nil
end

-- cycle_error(id, chain): the CYCLE (or TOO_LARGE, for a cut walk) reply for making id
-- wait for the head of chain (find_waiting's result); nil when chain is nil
local function cycle_error(id, chain, field)
  if chain == false then
    return fail("TOO_LARGE", "more than " .. LIMIT_GRAPH_WALK .. " intents would need a "
      .. "check for a cycle", {field = field, limit = LIMIT_GRAPH_WALK})
  end
  if chain == nil then return nil end
  local cycle = {id}
  for n = 1, #chain do cycle[#cycle + 1] = chain[n] end
  if cycle[#cycle] ~= id then cycle[#cycle + 1] = id end
  local shown = cycle
  if #cycle > 21 then
    shown = {unpack(cycle, 1, 20)}
    shown[21] = "..."
  end
  return fail("CYCLE", "this would close a cycle in which each intent waits for the next: "
    .. table.concat(shown, " -> "), {field = field, cycle = cycle})
end

-- plan_cascade(G, declared, first): every status move that moving first.id from first.from
-- to first.to causes, in order (first included), and the dependency_failed notes, reading
-- only what is allowed; or, when it reaches intents that are not in `declared` (id ->
-- {ik, ek, xpk}), the list of their ids and no plan. The rules (RFC-0002):
--   completed: each open dependent's unmet count drops; a blocked one reaching 0 becomes
--              active
--   abandoned: each open dependent gets dependency_failed and its policy applies (block:
--              stays held; abandon: abandoned too; ignore: as if completed); the open
--              children follow when the intent's cascade flag is set (the default)
-- Bounds: at most LIMIT_CASCADE moves, and at most LIMIT_PLAN_READS dependents and
-- children read, else TOO_LARGE (and nothing written).
local function plan_cascade(G, declared, first)
  local status, unmet = {}, {}
  local plan, notes, needed, asked = {}, {}, {}, {}
  local reads, bad = 0, nil
  local function st(id)  -- the status, or false when the mirror has no entry
    local s = status[id]
    if s == nil then s = redis.call("HGET", G.st, id) end
    return s
  end
  local function um(id)
    local n = unmet[id]
    if n == nil then n = unmet_of(G, id) end
    return n
  end
  local function need(id)
    if declared[id] then return true end
    if not asked[id] then
      asked[id] = true
      needed[#needed + 1] = id
    end
    return false
  end
  local queue, head = {first}, 1
  local function push(id, to, reason)
    local from = st(id)
    if not from then
      bad = fail("NOT_FOUND", "intent " .. id .. " is in the graph but not in its status mirror",
        {id = id})
    elseif need(id) then
      queue[#queue + 1] = {id = id, from = from, to = to, reason = reason}
      status[id] = to
    end
  end
  local function read(list)
    reads = reads + #list
    if reads > LIMIT_PLAN_READS then
      bad = fail("TOO_LARGE", "this change would read more than " .. LIMIT_PLAN_READS
        .. " graph edges; change the graph in smaller parts", {limit = LIMIT_PLAN_READS})
    end
    return list
  end
  status[first.id] = first.to
  while head <= #queue and not bad do
    local m = queue[head]
    head = head + 1
    plan[#plan + 1] = m
    if #plan > LIMIT_CASCADE then
      bad = fail("TOO_LARGE", "this change would move more than " .. LIMIT_CASCADE
        .. " intents; change the graph in smaller parts", {limit = LIMIT_CASCADE})
      break
    end
    local keys = declared[m.id]
    if m.to == "completed" then
      local dependents = read(id_list(G.rd, m.id))
      for n = 1, #dependents do
        local a = dependents[n]
        local s = st(a)
        if s and not TERMINAL[s] then
          local left = um(a) - 1
          unmet[a] = left
          if left == 0 and s == "blocked" then push(a, "active", "dependencies satisfied") end
        end
      end
    elseif m.to == "abandoned" then
      local dependents = read(id_list(G.rd, m.id))
      for n = 1, #dependents do
        local a = dependents[n]
        local s = st(a)
        if s and not TERMINAL[s] and need(a) then
          local policy = redis.call("HGET", declared[a].ik, "on_dep_fail") or "block"
          notes[#notes + 1] = {id = a, dep = m.id, policy = policy}
          if policy == "abandon" then
            push(a, "abandoned", "dependency " .. m.id .. " was abandoned")
          elseif policy == "ignore" then
            local left = um(a) - 1
            unmet[a] = left
            if left == 0 and s == "blocked" then push(a, "active", "dependencies satisfied") end
          end
        end
      end
      if keys and redis.call("HGET", keys.ik, "cascade") ~= "0" then
        local children = read(redis.call("ZRANGE", keys.xpk, 0, LIMIT_CHILDREN - 1))
        for n = 1, #children do
          local cid = string.sub(children[n], 18)
          local s = st(cid)
          if not s or not TERMINAL[s] then
            push(cid, "abandoned", "parent " .. m.id .. " was abandoned")
          end
          if bad then break end
        end
      end
    end
  end
  if bad then return nil, bad end
  if #needed > 0 then return nil, nil, needed end
  return {plan = plan, notes = notes, unmet = unmet}
end

-- apply_move(G, m, keys, actor, at): write one planned move (status, indexes, mirror,
-- the parent's counts, version, status_changed); returns its moves entry (bus/moves.py)
local function apply_move(G, m, keys, actor, at)
  local f = redis.call("HMGET", keys.ik, "version", "created_us", "parent_intent_id", "pf")
  local member = string.format("%016.0f", tonumber(f[2])) .. ":" .. m.id
  redis.call("ZREM", G.ix[m.from], member)
  redis.call("ZADD", G.ix[m.to], 0, member)
  local version = tonumber(f[1]) + 1
  redis.call("HSET", keys.ik, "status", m.to, "version", version, "updated_at", iso_time(at))
  redis.call("HSET", G.st, m.id, m.to)
  if TERMINAL[m.to] then redis.call("HDEL", G.um, m.id) end
  if f[3] then
    redis.call("HINCRBY", G.ag, f[3] .. ":" .. m.from, -1)
    redis.call("HINCRBY", G.ag, f[3] .. ":" .. m.to, 1)
  end
  local payload = '{"from":"' .. m.from .. '","to":"' .. m.to .. '","version":' .. version
  if m.reason ~= "" then payload = payload .. ',"reason":' .. cjson.encode(m.reason) end
  emit(keys.ik, keys.ek, G.bk, m.id, "status_changed", actor, payload .. "}", at,
    m.from .. ">" .. m.to)
  return "[" .. cjson.encode(m.id) .. ',"' .. m.to .. '",' .. version .. "," .. (f[4] or "[]") .. "]"
end

-- apply_plan(G, result, declared, actor, at): write a plan: the first move, the
-- dependency_failed notes, the other moves, the unmet counts. Returns the moves JSON.
local function apply_plan(G, result, declared, actor, at)
  local plan, moves = result.plan, {}
  moves[1] = apply_move(G, plan[1], declared[plan[1].id], actor, at)
  for n = 1, #result.notes do
    local note = result.notes[n]
    local keys = declared[note.id]
    emit(keys.ik, keys.ek, G.bk, note.id, "dependency_failed", actor,
      '{"dependency_id":' .. cjson.encode(note.dep) .. ',"policy":"' .. note.policy .. '"}', at)
  end
  for n = 2, #plan do
    moves[#moves + 1] = apply_move(G, plan[n], declared[plan[n].id], actor, at)
  end
  for id, left in pairs(result.unmet) do
    if left <= 0 or TERMINAL[redis.call("HGET", G.st, id)] then
      redis.call("HDEL", G.um, id)
    else
      redis.call("HSET", G.um, id, left)
    end
  end
  return "[" .. table.concat(moves, ",") .. "]"
end
