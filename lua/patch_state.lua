--[[
patch_state: apply state patch ops (set, append, remove at JSON pointers) under the version check.

Invariants:
  - all ops are checked and applied to a working copy first; any failure writes nothing
    and leaves the version as it was
  - a given expected version must equal the current one (optimistic concurrency)
  - a write into a subtree guarded by a live lease must present that lease
    (includes/lease_guard.lua); without it, or with a stale one, nothing is written
  - completed and abandoned intents are closed to patches
  - the new state, the bumped version and the state_patched event are written together

KEYS:
  [1] intent  hash   {ns:p}:i:<id>
  [2] state   hash   {ns:p}:s:<id>
  [3] events  stream {ns:p}:e:<id>
  [4] bus     stream {ns:p}:bus
  [5] leases  hash   {ns:p}:l:<id>

ARGV:
  [1] id        the intent id
  [2] version   the version the caller read, or "" to skip the check
  [3] patches   JSON list of [op, path, JSON value text ("" for remove)]
  [4] actor     who patches
  [5] leases    JSON list of the leases presented: lease ids or "<scope>#<fencing token>"

Returns: the intent as JSON (includes/snapshot.lua)
Errors: INVALID, PATCH, TOO_LARGE, NOT_FOUND, CONFLICT, CLOSED, LEASE_CONFLICT, LEASE_EXPIRED
Events: state_patched
]]
-- @include "fail"
-- @include "now_us"
-- @include "iso_time"
-- @include "limits"
-- @include "open_writable"
-- @include "json_patch"
-- @include "emit"
-- @include "snapshot"
-- @include "lease_guard"

local rcall = redis.call
local ik, sk, ek, bk, lk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, expected, actor = ARGV[1], ARGV[2], ARGV[4]
local bad_actor = check_actor(actor)
if bad_actor then return bad_actor end

local cur, err = open_writable(ik, id, expected, {"status", "ssize"})
if cur == nil then return err end
local version = tonumber(cur[1])

local ok, ops = pcall(cjson.decode, ARGV[3])
if not ok or type(ops) ~= "table" or #ops == 0 then
  return fail("INVALID", "patches must be a non-empty list", {field = "patches"})
end
if #ops > LIMIT_PATCH_OPS then
  return fail("TOO_LARGE", "more than " .. LIMIT_PATCH_OPS .. " ops in one patch",
    {field = "patches", limit = LIMIT_PATCH_OPS, size = #ops})
end

-- working copy of the touched top-level fields: false marks "deleted"
local work, order, size = {}, {}, tonumber(cur[3]) or 0
local audit, paths = {}, {}
for n = 1, #ops do
  local op, path, value = ops[n][1], ops[n][2], ops[n][3]
  local field = "patches[" .. (n - 1) .. "]"
  if op ~= "set" and op ~= "append" and op ~= "remove" then
    return fail("INVALID", field .. ": unknown op " .. tostring(op) .. " (set, append, remove)",
      {field = field})
  end
  local tokens, why = parse_pointer(path)
  if tokens == nil then return fail("INVALID", field .. ": " .. why, {field = field}) end
  if op ~= "remove" then
    if type(value) ~= "string" or #value > LIMIT_STATE_BYTES then
      return fail("TOO_LARGE", field .. ": value is over " .. LIMIT_STATE_BYTES .. " bytes",
        {field = field, limit = LIMIT_STATE_BYTES})
    end
    local room = LIMIT_JSON_DEPTH - (#tokens - 1)
    if op == "append" then room = room - 1 end
    if not js_valid(value, room) then
      return fail("INVALID", field .. ": value is not JSON, or nests deeper than "
        .. LIMIT_JSON_DEPTH .. " levels with its path", {field = field})
    end
  end
  paths[n] = tokens
  if op == "remove" and #tokens > 1 and string.find(tokens[#tokens], "^%d+$") then
    -- removing a list element shifts every later one: for the lease guard it is a write
    -- to the whole list (a numeric token that names an object key errs on the safe side)
    paths[n] = {unpack(tokens, 1, #tokens - 1)}
  end
  local top = tokens[1]
  local before = work[top]
  if before == nil then
    before = rcall("HGET", sk, top)
    if not before then before = false end
    order[#order + 1] = top
  end
  local old = before
  if old == false then old = nil end
  local after, err = patch_field(old, op, tokens, value)
  if after == false then return fail("PATCH", field .. ": " .. err, {field = field}) end
  size = size - (old and (#top + #old) or 0) + (after and (#top + #after) or 0)
  work[top] = after or false
  local entry = '{"op":"' .. op .. '","path":' .. cjson.encode(path)
  if op ~= "remove" then entry = entry .. ',"value":' .. value end
  audit[#audit + 1] = entry .. "}"
end
if size > LIMIT_STATE_BYTES then
  return fail("TOO_LARGE", "state would be " .. size .. " bytes; the limit is " .. LIMIT_STATE_BYTES,
    {field = "state", limit = LIMIT_STATE_BYTES, size = size})
end

local at = now_us()
local guarded = lease_guard(lk, actor, ARGV[5], paths, at)
if guarded then return guarded end

-- all ops applied cleanly and no lease stands in the way: write
for n = 1, #order do
  local top = order[n]
  if work[top] == false then rcall("HDEL", sk, top) else rcall("HSET", sk, top, work[top]) end
end
version = version + 1
rcall("HSET", ik, "version", version, "updated_at", iso_time(at), "ssize", size)
emit(ik, ek, bk, id, "state_patched", actor,
  '{"patches":[' .. table.concat(audit, ",") .. '],"version":' .. version .. "}", at)
return snapshot(ik, sk)
