--[[
create_subscription: store a subscription record and add it to its scope's index.

Invariants:
  - every argument is checked before the first write: a refused subscription leaves no
    record and no index entry
  - the record and its index entry are written together; a scope never holds more than
    SUBS_PER_SCOPE subscriptions, the namespace never more than SUBS_MAX
  - expires_at is in the future by the server's clock; created_at is the server's time
  - the caller's record text is kept verbatim (only created_at is put in front of it)

KEYS:
  [1] subs   hash  {ns}:subs
  [2] index  set   {ns}:subs:x:i:<intent id> | {ns}:subs:x:p:<portfolio id> | {ns}:subs:x:g

ARGV:
  [1] id       the subscription id (a UUID chosen by the client)
  [2] kind     i (intent), p (portfolio) or g (global)
  [3] scope    the intent or portfolio id, "" for global
  [4] url      the webhook URL: http(s), at most SUBS_URL_BYTES
  [5] expires  expiry in µs since the epoch, "" for never
  [6] record   the record as a JSON object (bus/subscriptions.py), without created_at

Returns: created_at (microseconds)
Errors: INVALID, TOO_LARGE, EXISTS
Events: (none)
]]
-- @include "fail"
-- @include "now_us"
-- @include "validate"
-- @include "json_text"
-- @include "subscriptions"

local rcall = redis.call
local subs, index = KEYS[1], KEYS[2]
local id, kind, scope, url, expires, record = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]

if not is_id(id) then return fail("INVALID", "malformed subscription id", {field = "subscription_id"}) end
if kind ~= "g" and kind ~= "i" and kind ~= "p" then
  return fail("INVALID", "unknown subscription scope", {field = "scope"})
end
if (kind == "g") ~= (scope == "") or (kind ~= "g" and not is_id(scope)) then
  return fail("INVALID", "malformed scope id", {field = "intent_id"})
end
if not key_ends(index, sub_index_suffix(kind, scope)) then
  return fail("INVALID", "the index key does not belong to the scope", {field = "intent_id"})
end
if #url > SUBS_URL_BYTES or not string.find(url, "^[Hh][Tt][Tt][Pp][Ss]?://[\33-\126]+$") then
  return fail("INVALID", "webhook_url must be an http:// or https:// URL", {field = "webhook_url"})
end
local now = now_us()
if expires ~= "" then
  if #expires > 16 or not string.find(expires, "^[1-9]%d*$") then
    return fail("INVALID", "malformed expires_at", {field = "expires_at"})
  end
  if tonumber(expires) <= now then
    return fail("INVALID", "expires_at must be in the future", {field = "expires_at"})
  end
end
if #record > 65536 then
  return fail("TOO_LARGE", "the subscription record is over 65536 bytes", {field = "record"})
end
if not js_valid(record) or js_kind(record) ~= "object" then
  return fail("INVALID", "the subscription record must be a JSON object", {field = "record"})
end
local rec = decode_object(record)
local rec_kind, rec_scope = sub_scope(rec)
if rec.id ~= id or rec.webhook_url ~= url or rec_kind ~= kind or rec_scope ~= scope
    or (rec.expires_at ~= cjson.null and int(rec.expires_at or 0) ~= expires)
    or (rec.expires_at == cjson.null and expires ~= "") or rec.created_at ~= nil then
  return fail("INVALID", "the subscription record does not match its arguments", {field = "record"})
end
if type(rec.secret) ~= "string" or #rec.secret < 16 or not is_text(rec.subscriber_id, 256)
    or not is_text(rec.created_by, 256) or not sub_types_ok(rec.event_types) then
  return fail("INVALID", "the subscription record is malformed", {field = "record"})
end
if rcall("HEXISTS", subs, id) == 1 then
  return fail("EXISTS", "subscription " .. id .. " exists", {id = id})
end
if rcall("HLEN", subs) >= SUBS_MAX then
  return fail("TOO_LARGE", "the namespace has " .. SUBS_MAX .. " subscriptions",
    {field = "subscription", limit = SUBS_MAX})
end
if rcall("SCARD", index) >= SUBS_PER_SCOPE then
  return fail("TOO_LARGE", "the scope has " .. SUBS_PER_SCOPE .. " subscriptions",
    {field = "subscription", limit = SUBS_PER_SCOPE})
end

-- every check passed: write
rcall("HSET", subs, id, '{"created_at":' .. int(now) .. "," .. string.sub(record, js_ws(record, 1) + 1))
rcall("SADD", index, id)
return int(now)
