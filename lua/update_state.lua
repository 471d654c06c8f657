--[[
update_state: set top-level state keys under the version check (the reference SDK's
convenience form of a patch, and the hottest write, so it skips the pointer machinery).

Invariants:
  - every pair is checked before the first write; any failure writes nothing and leaves
    the version as it was
  - a given expected version must equal the current one (optimistic concurrency)
  - a write into a subtree guarded by a live lease must present that lease
    (includes/lease_guard.lua); without it, or with a stale one, nothing is written
  - completed and abandoned intents are closed to changes
  - the new values, the bumped version and a state_patched event (the same payload a
    patch_state of "set" ops records) are written together

KEYS:
  [1] intent  hash   {ns:p}:i:<id>
  [2] state   hash   {ns:p}:s:<id>
  [3] events  stream {ns:p}:e:<id>
  [4] bus     stream {ns:p}:bus
  [5] leases  hash   {ns:p}:l:<id>

ARGV:
  [1] id        the intent id
  [2] version   the version the caller read, or "" to skip the check
  [3] pairs     JSON list of [top-level key, JSON value text]
  [4] actor     who writes
  [5] leases    JSON list of the leases presented: lease ids or "<scope>#<fencing token>"

Returns: the intent as JSON (includes/snapshot.lua)
Errors: INVALID, TOO_LARGE, NOT_FOUND, CONFLICT, CLOSED, LEASE_CONFLICT, LEASE_EXPIRED
Events: state_patched
]]
-- @include "fail"
-- @include "now_us"
-- @include "iso_time"
-- @include "limits"
-- @include "open_writable"
-- @include "json_text"
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

local ok, pairs_ = pcall(cjson.decode, ARGV[3])
if not ok or type(pairs_) ~= "table" or #pairs_ == 0 then
  return fail("INVALID", "state_patch must be a non-empty list of [key, value]",
    {field = "state_patch"})
end
if #pairs_ > LIMIT_PATCH_OPS then
  return fail("TOO_LARGE", "more than " .. LIMIT_PATCH_OPS .. " keys in one update",
    {field = "state_patch", limit = LIMIT_PATCH_OPS, size = #pairs_})
end
local size, flat, audit, seen, paths = tonumber(cur[3]) or 0, {}, {}, {}, {}
for n = 1, #pairs_ do
  local key, value = pairs_[n][1], pairs_[n][2]
  local field = "state_patch[" .. (n - 1) .. "]"
  if type(key) ~= "string" or not is_utf8(key) or type(value) ~= "string" then
    return fail("INVALID", field .. ": a pair is [text key, JSON value text]", {field = field})
  end
  if not js_valid(value) then
    return fail("INVALID", field .. ": value is not JSON, or nests deeper than "
      .. LIMIT_JSON_DEPTH .. " levels", {field = field})
  end
  -- stored values are never empty (JSON text), so a length of 0 means "not there"
  local old = seen[key] and #seen[key] or rcall("HSTRLEN", sk, key)
  if old > 0 then size = size - #key - old end
  seen[key] = value
  paths[n] = {key}
  size = size + #key + #value
  flat[#flat + 1] = key
  flat[#flat + 1] = value
  local path = key
  if string.find(key, "[~/]") then
    path = string.gsub(string.gsub(key, "~", "~0"), "/", "~1")
  end
  audit[n] = '{"op":"set","path":' .. cjson.encode("/" .. path) .. ',"value":' .. value .. "}"
end
if size > LIMIT_STATE_BYTES then
  return fail("TOO_LARGE", "state would be " .. size .. " bytes; the limit is " .. LIMIT_STATE_BYTES,
    {field = "state", limit = LIMIT_STATE_BYTES, size = size})
end

local at = now_us()
local guarded = lease_guard(lk, actor, ARGV[5], paths, at)
if guarded then return guarded end
rcall("HSET", sk, unpack(flat))
version = version + 1
rcall("HSET", ik, "version", version, "updated_at", iso_time(at), "ssize", size)
emit(ik, ek, bk, id, "state_patched", actor,
  '{"patches":[' .. table.concat(audit, ",") .. '],"version":' .. version .. "}", at)
return snapshot(ik, sk)
