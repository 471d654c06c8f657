-- emit(ik, ek, bk, id, etype, actor, payload, at, hint): append one event.
-- Writes the event to the intent's stream (ek) with the next per-intent sequence number
-- (HINCRBY on the intent hash: gapless because the whole script is atomic) and a
-- pointer entry to the partition bus (bk) that the daemon and agents consume through
-- consumer groups. payload is JSON text the caller has already validated.
-- The pointer carries the intent's assignees (field g, their JSON list, as of this
-- event) when it has any: an agent's consumer group can then pick the events of its own
-- intents out of the bus without a read per entry (docs/agents.md).
-- hint (optional) goes into the pointer as field x: the one fact a consumer routes on
-- without fetching the payload (the agent an agent_assigned names, "<from>><to>" of a
-- status_changed).
-- A payload of at most EMIT_INLINE_BYTES goes into the pointer too (fields p and at, as
-- in the log): a consumer then has the whole event in the entry it read, with no second
-- read of the intent's log. That costs the payload's bytes again on the bus until the
-- daemon's retention trims the acknowledged entries (bench/MISSES.md, consumption); a
-- bigger payload stays in the log only and is fetched by the consumers that want it.
-- Returns the event's stream id and its sequence number.
local EMIT_INLINE_BYTES = 512

local function emit(ik, ek, bk, id, etype, actor, payload, at, hint)
  local seq = redis.call("HINCRBY", ik, "seq", 1)
  local eid = redis.call("XADD", ek, "*", "s", seq, "t", etype, "a", actor,
    "p", payload, "at", int(at))
  local pointer = {"i", id, "e", eid, "s", seq, "t", etype, "a", actor}
  local agents = redis.call("HGET", ik, "agents")
  if agents and agents ~= "[]" then
    pointer[#pointer + 1] = "g"
    pointer[#pointer + 1] = agents
  end
  if hint then
    pointer[#pointer + 1] = "x"
    pointer[#pointer + 1] = hint
  end
  if #payload <= EMIT_INLINE_BYTES then
    pointer[#pointer + 1] = "p"
    pointer[#pointer + 1] = payload
    pointer[#pointer + 1] = "at"
    pointer[#pointer + 1] = int(at)
  end
  redis.call("XADD", bk, "*", unpack(pointer))
  return eid, seq
end
