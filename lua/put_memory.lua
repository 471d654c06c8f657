--[[
put_memory: create an entry of an agent's memory, or (upsert) replace it whole (RFC-0015).

Invariants:
  - every argument is checked before the first write; a refused call changes nothing
  - create refuses a live key (EXISTS, with its current version); upsert replaces value,
    type, tags and expiry, keeps created_at and bumps the version; an expired entry is
    absent: writing its key starts again at version 1
  - the entry, its expiry and all its index members change together; the agent never
    holds more than MEMORY_ENTRIES live entries, and expired ones never block a write
    (when the memory is full, the purge below frees at least one)
  - times and the expiry come from the server clock; long_term entries never expire
  - at most MEMORY_PURGE expired entries are removed on the way (bounded work)

KEYS:
  [1] meta    hash  {ns:m:<agent>}:meta
  [2] values  hash  {ns:m:<agent>}:val
  [3] expiry  zset  {ns:m:<agent>}:exp
  [4] index   zset  {ns:m:<agent>}:idx

ARGV:
  [1] agent   the agent id (the keys must be its memory keys)
  [2] key     the entry's key: 1-MEMORY_KEY_BYTES bytes, one line
  [3] mode    create or upsert
  [4] type    working, episodic or long_term
  [5] value   the value as JSON text (at most MEMORY_VALUE_BYTES)
  [6] tags    JSON array of distinct tags
  [7] ttoks   JSON array of the tags' keyword tokens (bus/memory.py tokenizes)
  [8] ctoks   JSON array of the key's and value's keyword tokens
  [9] ttl     time to live in milliseconds (1-MEMORY_TTL_MS), or "" for none

Returns: the entry's stored metadata (JSON text)
Errors: INVALID, TOO_LARGE, EXISTS
Events: (none)
]]
-- @include "memory"

local rcall = redis.call
local k = KEYS
local agent, key, mode, mtype, value, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[9]

local bad = mem_check_keys(k, agent) or mem_key(key)
if bad then return bad end
if mode ~= "create" and mode ~= "upsert" then
  return fail("INVALID", "mode must be create or upsert", {field = "mode"})
end
if MEMORY_TYPES[mtype] == nil then
  return fail("INVALID", "memory_type must be working, episodic or long_term",
    {field = "memory_type"})
end
bad = mem_value(value)
if bad then return bad end
local tags, tag_err = mem_list_arg(ARGV[6], MEMORY_TAGS, MEMORY_TAG_BYTES, "tags")
if not tags then return tag_err end
local ttoks, ttok_err = mem_list_arg(ARGV[7], MEMORY_TAG_TOKENS, MEMORY_TOKEN_BYTES, "tag_tokens")
if not ttoks then return ttok_err end
local ctoks, ctok_err = mem_list_arg(ARGV[8], MEMORY_TOKENS, MEMORY_TOKEN_BYTES, "tokens")
if not ctoks then return ctok_err end
local ttl_ms = nil
if ttl ~= "" then
  if #ttl > 12 or not string.find(ttl, "^[1-9]%d*$") or tonumber(ttl) > MEMORY_TTL_MS then
    return fail("INVALID", "ttl must be 1-" .. MEMORY_TTL_MS .. " ms", {field = "ttl_seconds"})
  end
  if mtype == "long_term" then
    return fail("INVALID", "long_term memory does not expire", {field = "ttl_seconds"})
  end
  ttl_ms = tonumber(ttl)
end

local now = now_us()
local old_text = rcall("HGET", k[1], key)
local old = mem_decode(old_text)
local live = old ~= nil and not mem_expired(k[3], key, now)
if mode == "create" and old_text and (old == nil or live) then
  return fail("EXISTS", "memory " .. key .. " exists",
    {key = key, current_version = old and old.n or nil})
end
if not old_text and rcall("HLEN", k[1]) >= MEMORY_ENTRIES
    and #rcall("ZRANGEBYSCORE", k[3], "-inf", int(now), "LIMIT", 0, 1) == 0 then
  return fail("TOO_LARGE", "the agent's memory holds " .. MEMORY_ENTRIES .. " entries",
    {field = "entries", limit = MEMORY_ENTRIES})
end

-- every check passed: write
if old_text then mem_drop(k, key, old) end
mem_purge(k, now)
local r = {t = mtype, g = tags, tt = ttoks, ct = ctoks, n = 1, c = now, u = now}
if live then
  r.n = old.n + 1
  r.c = old.c
end
if ttl_ms then r.e = now + ttl_ms * 1000 end
mem_store(k, key, r, value)
return mem_meta(r)
