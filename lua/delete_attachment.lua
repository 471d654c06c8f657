--[[
delete_attachment: remove an attachment (its metadata and any inline content) from an intent.

Invariants:
  - only an attachment of this intent is removed: an id that is not in this intent's
    attachments (unknown, deleted, or another intent's) is NOT_FOUND and changes nothing
  - closed intents may still drop attachments; the version does not change
  - the metadata, the content and the attachment_deleted event go together

KEYS:
  [1] intent       hash   {ns:p}:i:<id>
  [2] attachments  hash   {ns:p}:at:<id>
  [3] content      hash   {ns:p}:ac:<id>
  [4] events       stream {ns:p}:e:<id>
  [5] bus          stream {ns:p}:bus

ARGV:
  [1] id             the intent id
  [2] attachment_id  the attachment
  [3] actor          who deletes it

Returns: the deleted attachment's metadata as JSON text
Errors: INVALID, NOT_FOUND
Events: attachment_deleted
]]
-- @include "fail"
-- @include "now_us"
-- @include "validate"
-- @include "open_intent"
-- @include "emit"

local rcall = redis.call
local ik, tk, ck, ek, bk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, att_id, actor = ARGV[1], ARGV[2], ARGV[3]
local bad = check_actor(actor)
if bad then return bad end
if not is_id(att_id) then
  return fail("INVALID", "malformed attachment id", {field = "attachment_id"})
end
local cur, err = open_intent(ik, id, {})
if cur == nil then return err end
if not key_ends(tk, ":at:" .. id) or not key_ends(ck, ":ac:" .. id) then
  return fail("INVALID", "attachment keys are not this intent's", {field = "intent_id"})
end
local record = rcall("HGET", tk, att_id)
if not record then
  return fail("NOT_FOUND", "intent " .. id .. " has no attachment " .. att_id,
    {resource = "attachment", id = att_id})
end

local now = now_us()
rcall("HDEL", tk, att_id)
rcall("HDEL", ck, att_id)
emit(ik, ek, bk, id, "attachment_deleted", actor,
  '{"attachment_id":"' .. att_id .. '","filename":' .. cjson.encode(cjson.decode(record).filename)
  .. "}", now)
return record
