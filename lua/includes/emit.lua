-- emit(ik, ek, bk, id, etype, actor, payload, at): append one event.
-- Writes the event to the intent's stream (ek) with the next per-intent sequence number
-- (HINCRBY on the intent hash: gapless because the whole script is atomic) and a
-- pointer entry to the partition bus (bk) that the daemon and agents consume through
-- consumer groups. payload is JSON text the caller has already validated.
-- Returns the event's stream id and its sequence number.
local function emit(ik, ek, bk, id, etype, actor, payload, at)
  local seq = redis.call("HINCRBY", ik, "seq", 1)
  local eid = redis.call("XADD", ek, "*", "s", seq, "t", etype, "a", actor,
    "p", payload, "at", int(at))
  redis.call("XADD", bk, "*", "i", id, "e", eid, "s", seq, "t", etype, "a", actor)
  return eid, seq
end
