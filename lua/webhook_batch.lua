--[[
webhook_batch: record the jobs a queue's worker finished, then claim its next batch, in one round trip.

Invariants:
  - the finished jobs (delivered or dead-lettered) are acknowledged and deleted together,
    whoever holds the lock by now: a job that was delivered is never refused its
    acknowledgement (only delivered again, at worst, by a holder that claimed it meanwhile)
  - only the lock's holder claims jobs, records a retry or moves the lock: a worker whose
    lock another consumer took (it stalled past the TTL) gets 0 and changes nothing else
  - jobs are claimed oldest first: the group's pending ones (the holder's own, or those of
    a holder that is gone: holding the lock proves it) before new ones, and new ones only
    once every pending one is in the batch, so a batch never skips a job; at most `count`
  - a retry state names the one job it is for, and finishing that job clears it
  - every argument is checked before the first write

KEYS:
  [1] lock   string  {ns:w:<subscription id>}:lk
  [2] queue  stream  {ns:w:<subscription id>}:q
  [3] state  hash    {ns:w:<subscription id>}:st

ARGV:
  [1] owner     the consumer name (the daemon's id)
  [2] ttl       the lock's lifetime from now, in ms; 0 releases it
  [3] group     the queue's consumer group
  [4] count     most jobs to claim, 0-1000 (0: claim none); needs a ttl
  [5] if_empty  keep, or release: give the lock back when nothing was claimed
  [6] pending   1: take the group's pending jobs first; 0: only new ones (the holder
                claimed every pending job earlier in its turn; taken anyway when the lock
                was not this owner's a moment ago)
  [7] retry     "" or the job whose retry is scheduled (it is not among the finished)
  [8] attempts  the retry's attempts so far
  [9] next      when the retry is due, in µs
  [10] error    the retry's last error
  [11+] done    the ids of the finished jobs, at most 1000

Returns: 0 when another consumer holds the lock; else {now seconds, now µs, the retry
  state as HGETALL reads it (after this call's changes), 1 when pending jobs are left
  that this batch could not take (else 0), then each claimed job's entry id and fields,
  oldest first}
Errors: INVALID
Events: (none)
]]
-- @include "fail"
-- @include "validate"

local rcall = redis.call
local lock, queue, state = KEYS[1], KEYS[2], KEYS[3]
local owner, ttl, group, count = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local if_empty, pending = ARGV[5], ARGV[6]
local retry, attempts, due, err = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local ENTRY = "^%d+%-%d+$"

if not is_text(owner, 256) then return fail("INVALID", "malformed owner", {field = "consumer"}) end
if not is_text(group, 128) then return fail("INVALID", "malformed group", {field = "group"}) end
if not key_ends(lock, ":lk") or not key_ends(queue, ":q") or not key_ends(state, ":st")
    or string.sub(lock, 1, -4) ~= string.sub(queue, 1, -3)
    or string.sub(lock, 1, -4) ~= string.sub(state, 1, -4) then
  return fail("INVALID", "the keys are not one queue's", {field = "queue"})
end
if not ttl or ttl < 0 or ttl % 1 ~= 0 then return fail("INVALID", "malformed ttl", {field = "ttl"}) end
if not count or count < 0 or count > 1000 or count % 1 ~= 0 or (count > 0 and ttl == 0) then
  return fail("INVALID", "malformed count", {field = "count"})
end
if if_empty ~= "keep" and if_empty ~= "release" then
  return fail("INVALID", "if_empty must be keep or release", {field = "if_empty"})
end
if pending ~= "0" and pending ~= "1" then
  return fail("INVALID", "pending must be 0 or 1", {field = "pending"})
end
if retry ~= "" then
  if not string.find(retry, ENTRY) or not string.find(attempts, "^%d+$")
      or not string.find(due, "^%d+$") or #due > 17 or #err > 4000 then
    return fail("INVALID", "malformed retry state", {field = "retry"})
  end
end
local done = {}
for n = 11, #ARGV do
  if not string.find(ARGV[n], ENTRY) then
    return fail("INVALID", "malformed job id", {field = "done"})
  end
  done[#done + 1] = ARGV[n]
end
if #done > 1000 then return fail("INVALID", "too many finished jobs", {field = "done"}) end

if #done > 0 then
  rcall("XACK", queue, group, unpack(done))
  rcall("XDEL", queue, unpack(done))
end
local holder = rcall("GET", lock)
if holder and holder ~= owner then return 0 end

local current = rcall("HGETALL", state)
if #done > 0 and #current > 0 then
  local job
  for n = 1, #current, 2 do
    if current[n] == "job" then job = current[n + 1] end
  end
  for n = 1, #done do
    if done[n] == job then
      rcall("DEL", state)
      current = {}
      break
    end
  end
end
if retry ~= "" then
  rcall("HSET", state, "job", retry, "n", attempts, "next", due, "err", err)
  current = {"job", retry, "n", attempts, "next", due, "err", err}
end
if ttl == 0 then
  if holder then rcall("DEL", lock) end
else
  rcall("SET", lock, owner, "PX", ttl)
end

local t = rcall("TIME")
local reply = {t[1], t[2], current, 0}
if count > 0 then
  local n = 0
  local fresh = true
  if pending == "1" or holder ~= owner then
    -- a queue that does not exist (any more) has no group: nothing to claim
    local claimed = redis.pcall("XAUTOCLAIM", queue, group, owner, 0, "0-0", "COUNT", count)
    if claimed.err then
      fresh = false
    else
      for _, entry in ipairs(claimed[2]) do
        if entry then -- an entry deleted while pending comes back empty (Redis 6.2)
          reply[#reply + 1] = entry[1]
          reply[#reply + 1] = entry[2]
          n = n + 1
        end
      end
      if claimed[1] ~= "0-0" then
        reply[4] = 1 -- more pending: new jobs wait until every pending one is taken
        fresh = false
      end
    end
  end
  if fresh and n < count then
    local read = redis.pcall("XREADGROUP", "GROUP", group, owner, "COUNT", count - n,
      "STREAMS", queue, ">")
    if type(read) == "table" and not read.err then
      for _, entry in ipairs(read[1][2]) do
        reply[#reply + 1] = entry[1]
        reply[#reply + 1] = entry[2]
      end
    end
  end
  if #reply == 4 and if_empty == "release" then rcall("DEL", lock) end
end
return reply
