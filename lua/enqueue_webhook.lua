--[[
enqueue_webhook: queue one delivery job (a subscription, an event) unless it was queued.

Invariants:
  - a job is queued at most once per marker while the marker lives: the job and its
    marker are written together, so a repeated match (a bus entry handled again after a
    crash) queues nothing, and a crash can never leave a marker without its job
  - the queue's consumer group exists whenever the queue does (made with it)
  - a queue never holds more than its cap: a full queue queues nothing and says so (the
    caller dead-letters the job instead, so nothing is lost)

KEYS:
  [1] queue   stream  {ns:w:<subscription id>}:q
  [2] marker  string  {ns:w:<subscription id>}:m:<event key>[#<suffix>] (a replay of a
                      dead letter adds its dead-letter id, so it is queued once too)

ARGV:
  [1] group   the consumer group of the queue
  [2] ttl     how long the marker lives, in ms
  [3] cap     most jobs the queue may hold
  [4] key     the event key: <intent or portfolio id>/<event entry id>
  [5] source  the intent or portfolio id whose log holds the event
  [6] event   the event's entry id in that log
  [7] log     the log's key
  [8] member  the member intent of a portfolio event, "" otherwise

Returns: 1 queued, 0 already queued, -1 the queue is full
Errors: INVALID
Events: (none)
]]
-- @include "fail"
-- @include "validate"

local rcall = redis.call
local queue, marker = KEYS[1], KEYS[2]
local group, ttl, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local key, source, event, log, member = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]

if not is_text(group, 128) then return fail("INVALID", "malformed group", {field = "group"}) end
if not ttl or ttl < 1 or ttl % 1 ~= 0 then return fail("INVALID", "malformed ttl", {field = "ttl"}) end
if not cap or cap < 1 or cap % 1 ~= 0 then return fail("INVALID", "malformed cap", {field = "cap"}) end
if not is_id(source) or not string.find(event, "^%d+%-%d+$") or key ~= source .. "/" .. event then
  return fail("INVALID", "malformed event key", {field = "key"})
end
local at = string.find(marker, ":m:" .. key, 1, true)
local rest = at and string.sub(marker, at + 3 + #key) or ""
if not at or string.sub(marker, 1, at - 1) .. ":q" ~= queue
    or (rest ~= "" and string.sub(rest, 1, 1) ~= "#") then
  return fail("INVALID", "the marker does not belong to the event", {field = "key"})
end
if member ~= "" and not is_id(member) then return fail("INVALID", "malformed member", {field = "member"}) end
if not is_text(log, 512) then return fail("INVALID", "malformed log key", {field = "log"}) end

-- the marker first (one command checks and sets it); the script is atomic, so it is
-- taken back below when the queue turns out to be full
if not rcall("SET", marker, "1", "NX", "PX", ttl) then return 0 end
local size = rcall("XLEN", queue)
if size == 0 and rcall("EXISTS", queue) == 0 then
  rcall("XGROUP", "CREATE", queue, group, "0", "MKSTREAM")
elseif size >= cap then
  rcall("DEL", marker)
  return -1
end
rcall("XADD", queue, "*", "k", key, "i", source, "e", event, "l", log, "m", member)
return 1
