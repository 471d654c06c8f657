--[[
update_memory: replace the value (and optionally the tags) of a live memory entry whose
version is the one the caller read (RFC-0015).

Invariants:
  - every argument is checked before the first write; a refused call changes nothing
  - a stale version is CONFLICT with the current version, and nothing is written
  - an absent or expired entry is NOT_FOUND
  - type, created_at and expiry are kept; the version is bumped, updated_at is the
    server's time; the entry and all its index members change together
  - at most MEMORY_PURGE expired entries are removed on the way (bounded work)

KEYS:
  [1] meta    hash  {ns:m:<agent>}:meta
  [2] values  hash  {ns:m:<agent>}:val
  [3] expiry  zset  {ns:m:<agent>}:exp
  [4] index   zset  {ns:m:<agent>}:idx

ARGV:
  [1] agent    the agent id (the keys must be its memory keys)
  [2] key      the entry's key
  [3] version  the version the caller read (positive integer)
  [4] value    the new value as JSON text (at most MEMORY_VALUE_BYTES)
  [5] tags     JSON array of the new tags, or "" to keep them
  [6] ttoks    JSON array of the new tags' keyword tokens, or "" (with tags "")
  [7] ctoks    JSON array of the key's and new value's keyword tokens

Returns: the entry's stored metadata (JSON text)
Errors: INVALID, TOO_LARGE, NOT_FOUND, CONFLICT
Events: (none)
]]
-- @include "memory"

local rcall = redis.call
local k = KEYS
local agent, key, version, value = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local bad = mem_check_keys(k, agent) or mem_key(key)
if bad then return bad end
if #version > 15 or not string.find(version, "^[1-9]%d*$") then
  return fail("INVALID", "version must be a positive integer", {field = "version"})
end
bad = mem_value(value)
if bad then return bad end
if (ARGV[5] == "") ~= (ARGV[6] == "") then
  return fail("INVALID", "tags and their tokens go together", {field = "tags"})
end
local tags, ttoks = nil, nil
if ARGV[5] ~= "" then
  local err
  tags, err = mem_list_arg(ARGV[5], MEMORY_TAGS, MEMORY_TAG_BYTES, "tags")
  if not tags then return err end
  ttoks, err = mem_list_arg(ARGV[6], MEMORY_TAG_TOKENS, MEMORY_TOKEN_BYTES, "tag_tokens")
  if not ttoks then return err end
end
local ctoks, ctok_err = mem_list_arg(ARGV[7], MEMORY_TOKENS, MEMORY_TOKEN_BYTES, "tokens")
if not ctoks then return ctok_err end

local now = now_us()
local old_text = rcall("HGET", k[1], key)
if not old_text or mem_expired(k[3], key, now) then
  return fail("NOT_FOUND", "memory " .. key .. " does not exist", {resource = "memory", id = key})
end
local old = mem_decode(old_text)
if old == nil then
  return fail("INVALID", "memory " .. key .. " is stored in a form this script cannot read",
    {field = "key"})
end
if tonumber(version) ~= old.n then
  return fail("CONFLICT", "memory " .. key .. " is at version " .. int(old.n),
    {current_version = old.n, key = key})
end

-- every check passed: write
mem_drop(k, key, old)
mem_purge(k, now)
local r = {t = old.t, g = tags or old.g, tt = ttoks or old.tt, ct = ctoks, n = old.n + 1,
  c = old.c, u = now, e = old.e}
mem_store(k, key, r, value)
return mem_meta(r)
