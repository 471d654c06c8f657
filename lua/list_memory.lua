--[[
list_memory: one page of an agent's memory, most recently updated first (read-only).

Invariants:
  - nothing is written; expired entries (by the server clock) are skipped, and so are
    index members whose entry is gone
  - bounded: reads at most MEMORY_LIST_SCAN index members and returns at most `limit`
    (<= MEMORY_PAGE) entries; when the scan budget ends first, the cursor says where to
    go on, so a page's cost never grows with the size of the memory
  - one index family is read: by tag when a tag is given (the type, if also given, is
    checked per member with one ZSCORE), else by type, else every entry

KEYS:
  [1] meta    hash  {ns:m:<agent>}:meta
  [2] values  hash  {ns:m:<agent>}:val
  [3] expiry  zset  {ns:m:<agent>}:exp
  [4] index   zset  {ns:m:<agent>}:idx

ARGV:
  [1] agent   the agent id (the keys must be its memory keys)
  [2] type    working, episodic, long_term, or "" for every type
  [3] tag     only entries with this tag, or "" for any
  [4] cursor  "<updated, 16 digits>\0<key>" of the last entry of the previous page, or ""
  [5] limit   page size, 1-MEMORY_PAGE

Returns: {next cursor or "", key, metadata JSON, value JSON, key, ...}
Errors: INVALID, TOO_LARGE
Events: (none)
]]
-- @include "memory"

local rcall = redis.call
local k = KEYS
local agent, mtype, tag, cursor = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local bad = mem_check_keys(k, agent)
if bad then return bad end
local letter = nil
if mtype ~= "" then
  letter = MEMORY_TYPES[mtype]
  if letter == nil then
    return fail("INVALID", "memory_type must be working, episodic or long_term",
      {field = "memory_type"})
  end
end
if tag ~= "" and not mem_text(tag, MEMORY_TAG_BYTES) then
  return fail("INVALID", "malformed tag", {field = "tag"})
end
if cursor ~= "" and (not string.find(cursor, "^%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%z")
    or mem_key(string.sub(cursor, 18)) ~= nil) then
  return fail("INVALID", "cursor is not one this listing returned", {field = "cursor"})
end
local limit = tonumber(ARGV[5])
if not string.find(ARGV[5], "^[1-9]%d*$") or limit > MEMORY_PAGE then
  return fail("INVALID", "limit must be an integer from 1 to " .. MEMORY_PAGE, {field = "limit"})
end

local prefix = "a\0"
if tag ~= "" then
  prefix = "g\0" .. tag .. "\0"
elseif letter then
  prefix = "t\0" .. letter .. "\0"
end
local type_prefix = (tag ~= "" and letter) and ("t\0" .. letter .. "\0") or nil
local low = "[" .. prefix
local high = "(" .. string.sub(prefix, 1, -2) .. "\1"
if cursor ~= "" then high = "(" .. prefix .. cursor end

local now = now_us()
local found, scanned, last, more = {}, 0, "", true
while more and #found < limit and scanned < MEMORY_LIST_SCAN do
  local batch = math.min(math.max(limit - #found, 16), MEMORY_LIST_SCAN - scanned)
  local members = rcall("ZRANGE", k[4], high, low, "BYLEX", "REV", "LIMIT", 0, batch)
  if #members < batch then more = false end
  for n = 1, #members do
    local member = members[n]
    local rest = string.sub(member, #prefix + 1)
    local key = mem_member_key(member, prefix)
    scanned = scanned + 1
    last = rest
    high = "(" .. member
    if mem_live(k, key, now)
        and (type_prefix == nil or rcall("ZSCORE", k[4], type_prefix .. rest)) then
      found[#found + 1] = key
      if #found == limit then
        if n < #members then more = true end
        break
      end
    end
  end
end

local out = mem_rows(k, found)
table.insert(out, 1, more and last or "")
return out
