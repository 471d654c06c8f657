--[[
baseline: the raw Redis work of oibus's patch_state for one top-level `set` on a small
intent, with none of oibus's checks (no id, version, status, JSON or size validation).
It is the physical limit the oibus figures in bench/core.py are compared with.

KEYS:
  [1] intent  hash   {benchbase<hex>:0}:i:<id>
  [2] state   hash   {benchbase<hex>:0}:s:<id>
  [3] events  stream {benchbase<hex>:0}:e:<id>
  [4] bus     stream {benchbase<hex>:0}:bus

ARGV:
  [1] id      the intent id
  [2] field   the top-level state key
  [3] value   its new JSON text (trusted, not checked)
  [4] actor   who patches

Returns: {intent hash (flat), state hash (flat)}: the same reads patch_state makes, sent raw
(patch_state turns them into one JSON document; that work is part of its measured cost).

Redis calls, in patch_state's order: HMGET version/status/ssize, HGET the state field,
TIME, HSET the state field, HSET version/updated_at/ssize, HINCRBY seq, XADD the event
(s, t, a, p, at) to the intent stream, XADD the pointer (i, e, s, t, a) to the bus,
HGETALL intent, HGETALL state.
]]
local rcall = redis.call
local ik, sk, ek, bk = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, field, value, actor = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local cur = rcall("HMGET", ik, "version", "status", "ssize")
local old = rcall("HGET", sk, field)
local size = (tonumber(cur[3]) or 0) - (old and (#field + #old) or 0) + #field + #value
local t = rcall("TIME")
local at = string.format("%.0f", tonumber(t[1]) * 1000000 + tonumber(t[2]))

rcall("HSET", sk, field, value)
local version = tonumber(cur[1]) + 1
rcall("HSET", ik, "version", version, "updated_at", at, "ssize", size)
local seq = rcall("HINCRBY", ik, "seq", 1)
local payload = '{"patches":[{"op":"set","path":"/' .. field .. '","value":' .. value
  .. '}],"version":' .. version .. "}"
local eid = rcall("XADD", ek, "*", "s", seq, "t", "state_patched", "a", actor,
  "p", payload, "at", at)
rcall("XADD", bk, "*", "i", id, "e", eid, "s", seq, "t", "state_patched", "a", actor)
return {rcall("HGETALL", ik), rcall("HGETALL", sk)}
