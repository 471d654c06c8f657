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
--   G.dep id -> depends_on JSON  (forward edges, for the cycle check)
-- Per intent: rd:<id> (zset, its dependents) and x:p:<id> (zset, its children).
-- An intent whose status a cascade changes must be declared by the caller (its keys in
-- KEYS); a plan that reaches an undeclared one is not applied: the script returns the ids
-- it needs and the client calls again with them (scripts touch only the keys they are given).

local function group_of(id)
  return string.match(id, "^[^.]*")
end

-- graph_ctx(first): the partition keys, in the order every graph script declares them:
-- bus, the six status indexes, st, um, ag, dep (KEYS[first .. first + 10]).
local function graph_ctx(first)
  local G = {bk = KEYS[first], ix = {}}
  for n = 1, #STATUSES do
    local key = KEYS[first + n]
    if not key_ends(key, ":x:s:" .. STATUSES[n]) then return nil end
    G.ix[STATUSES[n]] = key
  end
  local k = first + #STATUSES
  G.st, G.um, G.ag, G.dep = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  if not (key_ends(G.st, ":g:st") and key_ends(G.um, ":g:um") and key_ends(G.ag, ":g:ag")
      and key_ends(G.dep, ":g:dep")) then
    return nil
  end
  return G
end

local function bad_graph_keys()
  return fail("INVALID", "graph keys are missing or out of order", {field = "keys"})
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
  local deps = cjson.decode(redis.call("HGET", G.dep, id) or "[]")
  for n = 1, #deps do
    if edge_counts(redis.call("HGET", G.st, deps[n]), policy) then out[#out + 1] = deps[n] end
  end
  return out
end

-- open_children(G, xpk, id, cap): how many children are not completed, and up to 20 of
-- them (reading at most LIMIT_CASCADE index entries for the names)
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

-- find_cycle(G, from, target): the dependency path from `from` to `target` following
-- depends_on edges, or nil; adding target -> from would close it. Visits at most
-- LIMIT_GRAPH_WALK intents (returns false when the walk is cut short).
local function find_cycle(G, from, target)
  local parent, stack, visited = {[from] = false}, {from}, 0
  while #stack > 0 do
    local node = table.remove(stack)
    if node == target then
      local path = {}
      while node do
        table.insert(path, 1, node)
        node = parent[node]
      end
      return path
    end
    visited = visited + 1
    if visited > LIMIT_GRAPH_WALK then return false end
    local deps = cjson.decode(redis.call("HGET", G.dep, node) or "[]")
    for n = 1, #deps do
      if parent[deps[n]] == nil then
        parent[deps[n]] = node
        stack[#stack + 1] = deps[n]
      end
    end
  end
  return nil
end

-- plan_cascade(G, declared, first): every status move that moving first.id from first.from
-- to first.to causes, in order (first included), and the dependency_failed notes, reading
-- only what is allowed; or, when it reaches intents that are not in `declared` (id ->
-- {ik, ek, rdk, xpk}), the list of their ids and no plan. The rules (RFC-0002):
--   completed: each dependent's unmet count drops; a blocked one reaching 0 becomes active
--   abandoned: each open dependent gets dependency_failed and its policy applies (block:
--              stays held; abandon: abandoned too; ignore: as if completed); the open
--              children follow when the intent's cascade flag is set (the default)
local function plan_cascade(G, declared, first)
  local status, unmet = {}, {}
  local plan, notes, needed, asked = {}, {}, {}, {}
  local too_many = false
  local function st(id)
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
      if #plan + #needed > LIMIT_CASCADE then too_many = true end
    end
    return false
  end
  local queue, head = {}, 1
  local function push(id, to, reason)
    if need(id) then
      queue[#queue + 1] = {id = id, from = st(id), to = to, reason = reason}
      status[id] = to
    end
  end
  queue[1] = first
  status[first.id] = first.to
  while head <= #queue and not too_many do
    local m = queue[head]
    head = head + 1
    plan[#plan + 1] = m
    if #plan + #needed > LIMIT_CASCADE then too_many = true break end
    local keys = declared[m.id]
    if m.to == "completed" then
      local dependents = redis.call("ZRANGE", keys.rdk, 0, -1)
      for n = 1, #dependents do
        local a = dependents[n]
        local left = um(a) - 1
        unmet[a] = left
        if left == 0 and st(a) == "blocked" then push(a, "active", "dependencies satisfied") end
      end
    elseif m.to == "abandoned" then
      local dependents = redis.call("ZRANGE", keys.rdk, 0, -1)
      for n = 1, #dependents do
        local a = dependents[n]
        local s = st(a)
        if not TERMINAL[s] and need(a) then
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
      if redis.call("HGET", keys.ik, "cascade") ~= "0" then
        local children = redis.call("ZRANGE", keys.xpk, 0, -1)
        for n = 1, #children do
          local cid = string.sub(children[n], 18)
          if not TERMINAL[st(cid)] then
            push(cid, "abandoned", "parent " .. m.id .. " was abandoned")
          end
          if too_many then break end
        end
      end
    end
  end
  if too_many then
    return nil, fail("TOO_LARGE", "this change would move more than " .. LIMIT_CASCADE
      .. " intents; change the graph in smaller parts", {limit = LIMIT_CASCADE})
  end
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
  if f[3] then
    redis.call("HINCRBY", G.ag, f[3] .. ":" .. m.from, -1)
    redis.call("HINCRBY", G.ag, f[3] .. ":" .. m.to, 1)
  end
  local payload = '{"from":"' .. m.from .. '","to":"' .. m.to .. '","version":' .. version
  if m.reason ~= "" then payload = payload .. ',"reason":' .. cjson.encode(m.reason) end
  emit(keys.ik, keys.ek, G.bk, m.id, "status_changed", actor, payload .. "}", at)
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
    if left <= 0 then
      redis.call("HDEL", G.um, id)
    else
      redis.call("HSET", G.um, id, left)
    end
  end
  return "[" .. table.concat(moves, ",") .. "]"
end
