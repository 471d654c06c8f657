--[[
recall_memory: the live entries of an agent's memory that best match keyword tokens:
most matching tokens first, then most recently updated, then by key (read-only).

Invariants:
  - nothing is written; expired entries (by the server clock) are skipped
  - bounded, never a scan of the keyspace or of the whole memory: for each of at most
    MEMORY_QUERY_TOKENS tokens and each asked type (1 or 3), one ZRANGE reads at most
    MEMORY_RECALL_SCAN index members (the most recently updated entries holding that
    token); the candidates, ranked, get one HEXISTS and one ZSCORE each (is it live by
    the server clock) until `limit` (<= MEMORY_RECALL_MAX) live ones are found, and one
    HMGET per hash reads those

KEYS:
  [1] meta    hash  {ns:m:<agent>}:meta
  [2] values  hash  {ns:m:<agent>}:val
  [3] expiry  zset  {ns:m:<agent>}:exp
  [4] index   zset  {ns:m:<agent>}:idx

ARGV:
  [1] agent   the agent id (the keys must be its memory keys)
  [2] type    working, episodic, long_term, or "" for every type
  [3] limit   most entries returned, 1-MEMORY_RECALL_MAX
  [4] tokens  JSON array of distinct query tokens (bus/memory.py tokenizes)

Returns: {key, metadata JSON, value JSON, key, ...}, best first
Errors: INVALID, TOO_LARGE
Events: (none)
]]
-- @include "memory"

local rcall = redis.call
local k = KEYS
local agent, mtype = ARGV[1], ARGV[2]
local bad = mem_check_keys(k, agent)
if bad then return bad end
local letters = MEMORY_LETTERS
if mtype ~= "" then
  if MEMORY_TYPES[mtype] == nil then
    return fail("INVALID", "memory_type must be working, episodic or long_term",
      {field = "memory_type"})
  end
  letters = {MEMORY_TYPES[mtype]}
end
local limit = tonumber(ARGV[3])
if not string.find(ARGV[3], "^[1-9]%d*$") or limit > MEMORY_RECALL_MAX then
  return fail("INVALID", "limit must be an integer from 1 to " .. MEMORY_RECALL_MAX,
    {field = "limit"})
end
local tokens, tok_err = mem_list_arg(ARGV[4], MEMORY_QUERY_TOKENS, MEMORY_TOKEN_BYTES, "query")
if not tokens then return tok_err end

local hits, stamps, order = {}, {}, {}
for _, letter in ipairs(letters) do
  for _, token in ipairs(tokens) do
    local prefix = "w\0" .. letter .. "\0" .. token .. "\0"
    local members = rcall("ZRANGE", k[4], "(" .. string.sub(prefix, 1, -2) .. "\1",
      "[" .. prefix, "BYLEX", "REV", "LIMIT", 0, MEMORY_RECALL_SCAN)
    for n = 1, #members do
      local key = mem_member_key(members[n], prefix)
      if hits[key] == nil then
        order[#order + 1] = key
        hits[key] = 0
        stamps[key] = string.sub(members[n], #prefix + 1, #prefix + 16)
      end
      hits[key] = hits[key] + 1
    end
  end
end
table.sort(order, function(a, b)
  if hits[a] ~= hits[b] then return hits[a] > hits[b] end
  if stamps[a] ~= stamps[b] then return stamps[a] > stamps[b] end
  return a < b
end)

local now = now_us()
local found = {}
for n = 1, #order do
  if #found >= limit then break end
  if mem_live(k, order[n], now) then found[#found + 1] = order[n] end
end
return mem_rows(k, found)
