-- @include "fail"
-- @include "now_us"
-- @include "validate"
-- @include "json_text"
-- Agent memory (RFC-0015): the limits, checks and index upkeep the memory scripts share.
--
-- One agent's memory is four keys under the tag {ns:m:<agent>} (bus/keyspace.py):
--   meta  hash  key -> {"t":type,"g":[tags],"tt":[tag tokens],"ct":[content tokens],
--                       "n":version,"c":created µs,"u":updated µs,"e":expires µs|null}
--   val   hash  key -> the value's JSON text, verbatim
--   exp   zset  key scored by its expiry (µs): entries with a TTL only
--   idx   zset  score 0, read BYLEX; every member ends in "<updated, 16 digits>\0<key>":
--           a\0<stamp>                   every entry, newest first
--           t\0<letter>\0<stamp>         by type (w working, e episodic, l long_term)
--           g\0<tag>\0<stamp>            by tag
--           w\0<letter>\0<token>\0<stamp> the recall index, per type and token
-- Keys, tags and tokens hold no control characters, so \0 separates them unambiguously
-- and one prefix range reads one family, newest first.
-- An entry whose expiry has passed by the server clock reads as absent everywhere; the
-- write scripts remove up to MEMORY_PURGE such entries each (with their index members),
-- so the index is exact except for expired entries, which every read skips.

-- Mirrors of bus/limits.py (tests/test_memory.py keeps the two equal)
local MEMORY_VALUE_BYTES = 65536
local MEMORY_KEY_BYTES = 256
local MEMORY_TAGS = 16
local MEMORY_TAG_BYTES = 64
local MEMORY_TOKENS = 64
local MEMORY_TAG_TOKENS = 32
local MEMORY_TOKEN_BYTES = 64
local MEMORY_ENTRIES = 10000
local MEMORY_PURGE = 16
local MEMORY_TTL_MS = 31536000000
local MEMORY_QUERY_TOKENS = 16
local MEMORY_RECALL_SCAN = 200
local MEMORY_RECALL_MAX = 100
local MEMORY_PAGE = 200
local MEMORY_LIST_SCAN = 1000

local MEMORY_TYPES = {working = "w", episodic = "e", long_term = "l"}
local MEMORY_LETTERS = {"w", "e", "l"}

-- one line of UTF-8 text, 1..max_bytes, without control characters (which would break
-- the \0-separated index members)
local function mem_text(v, max_bytes)
  return is_text(v, max_bytes) and not string.find(v, "[%z\1-\31\127]")
end

-- mem_check_keys(keys, agent): nil, or the error reply when the four keys are not the
-- agent's memory keys (one tag, named for that agent)
local function mem_check_keys(keys, agent)
  if not is_text(agent, 256) then
    return fail("INVALID", "agent_id must be 1-256 bytes of text", {field = "agent_id"})
  end
  local tag = string.sub(keys[1], 1, -6)
  if not key_ends(keys[1], "}:meta") or string.sub(tag, 1, 1) ~= "{"
      or not key_ends(tag, ":m:" .. key_segment(agent) .. "}")
      or keys[2] ~= tag .. ":val" or keys[3] ~= tag .. ":exp"
      or (keys[4] ~= nil and keys[4] ~= tag .. ":idx") then
    return fail("INVALID", "the keys are not the memory keys of agent " .. agent,
      {field = "agent_id"})
  end
end

-- mem_key(key): nil, or the error reply for a malformed memory key
local function mem_key(key)
  if #key > MEMORY_KEY_BYTES then
    return fail("TOO_LARGE", "key is over " .. MEMORY_KEY_BYTES .. " bytes",
      {field = "key", limit = MEMORY_KEY_BYTES, size = #key})
  end
  if not mem_text(key, MEMORY_KEY_BYTES) then
    return fail("INVALID", "key must be one line of UTF-8 text without control characters",
      {field = "key"})
  end
end

-- mem_strings(text, max_n, max_bytes): the JSON array of distinct strings in text, or
-- nil and "large" (too many) or "bad" (anything else)
local function mem_strings(text, max_n, max_bytes)
  if string.sub(text, 1, 1) ~= "[" or not js_valid(text, 1) then return nil, "bad" end
  local ok, list = pcall(cjson.decode, text)
  if not ok or type(list) ~= "table" then return nil, "bad" end
  local count = 0
  for _ in pairs(list) do count = count + 1 end
  if count ~= #list then return nil, "bad" end
  if count > max_n then return nil, "large" end
  local seen = {}
  for n = 1, count do
    local s = list[n]
    if not mem_text(s, max_bytes) or seen[s] then return nil, "bad" end
    seen[s] = true
  end
  return list
end

-- mem_list_arg(text, max_n, max_bytes, field): the list, or nil and the error reply
local function mem_list_arg(text, max_n, max_bytes, field)
  local list, why = mem_strings(text, max_n, max_bytes)
  if list then return list end
  if why == "large" then
    return nil, fail("TOO_LARGE", field .. " holds more than " .. max_n .. " entries",
      {field = field, limit = max_n})
  end
  return nil, fail("INVALID", field .. " must be a JSON array of distinct strings of 1-"
    .. max_bytes .. " bytes without control characters", {field = field})
end

-- mem_value(text): nil, or the error reply for a value that is not JSON within bounds
local function mem_value(text)
  if #text > MEMORY_VALUE_BYTES then
    return fail("TOO_LARGE", "value is over " .. MEMORY_VALUE_BYTES .. " bytes",
      {field = "value", limit = MEMORY_VALUE_BYTES, size = #text})
  end
  if not js_valid(text) then
    return fail("INVALID", "value must be JSON text", {field = "value"})
  end
end

local function mem_stamp(us)
  return string.format("%016.0f", us)
end

-- the stored metadata of an entry as a table, or nil when it cannot be read
local function mem_decode(text)
  if not text then return nil end
  local ok, r = pcall(cjson.decode, text)
  if not ok or type(r) ~= "table" or MEMORY_TYPES[r.t] == nil or type(r.g) ~= "table"
      or type(r.tt) ~= "table" or type(r.ct) ~= "table" or type(r.n) ~= "number"
      or type(r.c) ~= "number" or type(r.u) ~= "number" then
    return nil
  end
  if r.e == cjson.null then r.e = nil end
  return r
end

local function mem_array(list)
  local parts = {}
  for n = 1, #list do parts[n] = cjson.encode(list[n]) end
  return "[" .. table.concat(parts, ",") .. "]"
end

local function mem_meta(r)
  return '{"t":"' .. r.t .. '","g":' .. mem_array(r.g) .. ',"tt":' .. mem_array(r.tt)
    .. ',"ct":' .. mem_array(r.ct) .. ',"n":' .. int(r.n) .. ',"c":' .. int(r.c)
    .. ',"u":' .. int(r.u) .. ',"e":' .. (r.e and int(r.e) or "null") .. "}"
end

-- every index member of the entry: at most 2 + MEMORY_TAGS + MEMORY_TAG_TOKENS +
-- MEMORY_TOKENS of them
local function mem_postings(key, r)
  local letter = MEMORY_TYPES[r.t]
  local stamp = mem_stamp(r.u) .. "\0" .. key
  local out = {"a\0" .. stamp, "t\0" .. letter .. "\0" .. stamp}
  for n = 1, #r.g do out[#out + 1] = "g\0" .. r.g[n] .. "\0" .. stamp end
  local seen = {}
  for _, list in ipairs({r.tt, r.ct}) do
    for n = 1, #list do
      local token = list[n]
      if not seen[token] then
        seen[token] = true
        out[#out + 1] = "w\0" .. letter .. "\0" .. token .. "\0" .. stamp
      end
    end
  end
  return out
end

-- the key from an index member read with the family prefix `prefix`
local function mem_member_key(member, prefix)
  return string.sub(member, #prefix + 18)
end

-- true when the entry has an expiry and it has passed by the server clock
local function mem_expired(exp, key, now)
  local at = redis.call("ZSCORE", exp, key)
  return at ~= false and at ~= nil and tonumber(at) <= now
end

-- true when the entry exists and has not expired: index members whose entry is gone
-- (written around the scripts) are skipped like expired ones
local function mem_live(k, key, now)
  return redis.call("HEXISTS", k[1], key) == 1 and not mem_expired(k[3], key, now)
end

-- remove an entry and its index members (r may be nil: unreadable metadata, whose
-- index members cannot be named; readers skip members whose entry is gone)
local function mem_drop(k, key, r)
  if r then redis.call("ZREM", k[4], unpack(mem_postings(key, r))) end
  redis.call("HDEL", k[1], key)
  redis.call("HDEL", k[2], key)
  redis.call("ZREM", k[3], key)
end

-- remove up to MEMORY_PURGE entries whose expiry has passed; returns how many
local function mem_purge(k, now)
  local due = redis.call("ZRANGEBYSCORE", k[3], "-inf", int(now), "LIMIT", 0, MEMORY_PURGE)
  for n = 1, #due do
    mem_drop(k, due[n], mem_decode(redis.call("HGET", k[1], due[n])))
  end
  return #due
end

-- write the entry and its index members
local function mem_store(k, key, r, value)
  redis.call("HSET", k[1], key, mem_meta(r))
  redis.call("HSET", k[2], key, value)
  if r.e then redis.call("ZADD", k[3], int(r.e), key) end
  local args = {}
  for _, member in ipairs(mem_postings(key, r)) do
    args[#args + 1] = 0
    args[#args + 1] = member
  end
  redis.call("ZADD", k[4], unpack(args))
end

-- the flat reply of the read scripts: key, metadata, value for each live entry found
local function mem_rows(k, keys)
  local out = {}
  if #keys == 0 then return out end
  local metas = redis.call("HMGET", k[1], unpack(keys))
  local values = redis.call("HMGET", k[2], unpack(keys))
  for n = 1, #keys do
    if metas[n] and values[n] then
      out[#out + 1] = keys[n]
      out[#out + 1] = metas[n]
      out[#out + 1] = values[n]
    end
  end
  return out
end
