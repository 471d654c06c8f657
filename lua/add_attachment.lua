--[[
add_attachment: attach a file to an intent, inline (base64) or by reference (RFC-0005).

Invariants:
  - exactly one source: inline base64 content of at most LIMIT_ATTACHMENT_BYTES of base64
    text (its size is computed here from the content), or a storage URL (its size is the
    caller's, if given); oversize content is TOO_LARGE and nothing is stored
  - metadata is a JSON object whose RFC-0005 fields (width, height, pages, duration,
    frame_rate, encoding) have their types; it is kept verbatim
  - an id already used on this intent is EXISTS; an intent holds at most ATT_PER_INTENT
    attachments; closed intents take no new attachments; the version does not change
  - the metadata, the content and the attachment_added event are written together

KEYS:
  [1] intent       hash   {ns:p}:i:<id>
  [2] attachments  hash   {ns:p}:at:<id>
  [3] content      hash   {ns:p}:ac:<id>
  [4] events       stream {ns:p}:e:<id>
  [5] bus          stream {ns:p}:bus

ARGV:
  [1] id             the intent id
  [2] attachment_id  the new attachment's id (a UUID chosen by the client)
  [3] filename       1 to 1024 bytes, no control characters
  [4] mime_type      type/subtype[;parameters]
  [5] source         "inline" or "url"
  [6] content        base64 text (inline; "" otherwise)
  [7] storage_url    an absolute URL (url; "" otherwise)
  [8] size           decimal bytes, or "" (unknown); for inline content it must match
  [9] description    "" for none; at most 64 KiB
  [10] metadata      JSON object
  [11] actor         who uploads it

Returns: the attachment's metadata as JSON text
Errors: INVALID, TOO_LARGE, NOT_FOUND, CLOSED, EXISTS
Events: attachment_added
]]
-- @include "fail"
-- @include "now_us"
-- @include "limits"
-- @include "validate"
-- @include "terminal"
-- @include "open_intent"
-- @include "emit"
-- @include "att_checks"

local rcall = redis.call
local ik, tk, ck, ek, bk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, att_id, filename, mime, source, content, url, size, description, metadata, actor =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10],
  ARGV[11]
local bad = check_actor(actor)
if bad then return bad end
if not is_id(att_id) then
  return fail("INVALID", "malformed attachment id", {field = "attachment_id"})
end
if not is_text(filename, LIMIT_TITLE_BYTES) or string.find(filename, "[%c]") then
  return fail("INVALID", "filename must be 1-" .. LIMIT_TITLE_BYTES
    .. " bytes of text without control characters", {field = "filename"})
end
if not att_is_mime(mime) then
  return fail("INVALID", "mime_type must be type/subtype, like application/pdf",
    {field = "mime_type"})
end
if size ~= "" and (not string.find(size, "^%d+$") or #size > 15) then
  return fail("INVALID", "size must be a whole number of bytes below 10^15", {field = "size"})
end
local stored_url = "null"
if source == "inline" then
  if url ~= "" then
    return fail("INVALID", "give inline content or a storage_url, not both",
      {field = "storage_url"})
  end
  if #content > LIMIT_ATTACHMENT_BYTES then
    return fail("TOO_LARGE", "content_base64 is " .. #content .. " bytes; the limit is "
      .. LIMIT_ATTACHMENT_BYTES, {field = "content_base64", limit = LIMIT_ATTACHMENT_BYTES,
      size = #content})
  end
  local decoded = att_b64_size(content)
  if decoded == nil then
    return fail("INVALID", "content_base64 is not base64 text", {field = "content_base64"})
  end
  if size ~= "" and tonumber(size) ~= decoded then
    return fail("INVALID", "size " .. size .. " does not match the content's " .. decoded
      .. " bytes", {field = "size"})
  end
  size = int(decoded)
elseif source == "url" then
  if content ~= "" then
    return fail("INVALID", "give inline content or a storage_url, not both",
      {field = "content_base64"})
  end
  if not att_is_url(url) then
    return fail("INVALID", "storage_url must be an absolute URL of at most " .. ATT_URL_BYTES
      .. " bytes", {field = "storage_url"})
  end
  stored_url = cjson.encode(url)
else
  return fail("INVALID", "source must be inline or url", {field = "source"})
end
if description ~= "" and not is_text(description, LIMIT_TEXT_BYTES) then
  return fail("INVALID", "description must be a string of at most " .. LIMIT_TEXT_BYTES
    .. " bytes", {field = "description"})
end
bad = att_metadata(metadata)
if bad then return bad end
local cur, err = open_intent(ik, id, {"status"})
if cur == nil then return err end
if not key_ends(tk, ":at:" .. id) or not key_ends(ck, ":ac:" .. id) then
  return fail("INVALID", "attachment keys are not this intent's", {field = "intent_id"})
end
if TERMINAL[cur[2]] then
  return fail("CLOSED", "intent " .. id .. " is " .. cur[2] .. " and takes no attachments",
    {status = cur[2]})
end
if rcall("HEXISTS", tk, att_id) == 1 then
  return fail("EXISTS", "attachment " .. att_id .. " already exists", {id = att_id})
end
if rcall("HLEN", tk) >= ATT_PER_INTENT then
  return fail("TOO_LARGE", "an intent holds at most " .. ATT_PER_INTENT .. " attachments",
    {field = "attachment_id", limit = ATT_PER_INTENT})
end

local now = now_us()
local size_json = size
if size == "" then size_json = "null" end
local desc_json = "null"
if description ~= "" then desc_json = cjson.encode(description) end
local record = '{"id":"' .. att_id .. '","filename":' .. cjson.encode(filename)
  .. ',"mime_type":' .. cjson.encode(mime) .. ',"size":' .. size_json .. ',"storage_url":'
  .. stored_url .. ',"description":' .. desc_json .. ',"metadata":' .. metadata
  .. ',"uploaded_by":' .. cjson.encode(actor) .. ',"created_us":"' .. int(now) .. '"}'
rcall("HSET", tk, att_id, record)
if source == "inline" then rcall("HSET", ck, att_id, content) end
emit(ik, ek, bk, id, "attachment_added", actor,
  '{"attachment_id":"' .. att_id .. '","filename":' .. cjson.encode(filename) .. ',"mime_type":'
  .. cjson.encode(mime) .. ',"size":' .. size_json .. ',"storage_url":' .. stored_url .. "}", now)
return record
