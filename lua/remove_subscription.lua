--[[
remove_subscription: delete a subscription record and its index entry.

Invariants:
  - the record and its index entry go together; the index key must be the record's own
  - in "expired" mode (the daemon's clean-up) a record is removed only once its
    expires_at has passed by the server's clock; otherwise nothing changes
  - a refused call (INVALID, NOT_FOUND) changes nothing

KEYS:
  [1] subs   hash  {ns}:subs
  [2] index  set   the index of the record's scope (see create_subscription)

ARGV:
  [1] id    the subscription id
  [2] mode  "any" (unsubscribe) or "expired"

Returns: 1 when removed, 0 when not (expired mode: absent or not expired)
Errors: INVALID, NOT_FOUND
Events: (none)
]]
-- @include "fail"
-- @include "now_us"
-- @include "validate"
-- @include "subscriptions"

local rcall = redis.call
local subs, index = KEYS[1], KEYS[2]
local id, mode = ARGV[1], ARGV[2]

if not is_id(id) then return fail("INVALID", "malformed subscription id", {field = "subscription_id"}) end
if mode ~= "any" and mode ~= "expired" then return fail("INVALID", "unknown mode", {field = "mode"}) end
local text = rcall("HGET", subs, id)
if not text then
  if mode == "expired" then return 0 end
  return fail("NOT_FOUND", "subscription " .. id .. " does not exist",
    {resource = "subscription", id = id})
end
local rec = decode_object(text)
if rec == nil then return fail("INVALID", "subscription " .. id .. " is unreadable", {field = "subscription_id"}) end
local kind, scope = sub_scope(rec)
if not key_ends(index, sub_index_suffix(kind, scope)) then
  return fail("INVALID", "the index key does not belong to the subscription", {field = "subscription_id"})
end
if mode == "expired" and (type(rec.expires_at) ~= "number" or rec.expires_at > now_us()) then
  return 0
end
rcall("HDEL", subs, id)
rcall("SREM", index, id)
return 1
