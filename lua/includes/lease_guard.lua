-- @include "leases"
-- lease_guard(lk, actor, presented_text, paths, now): nil when the write may go ahead,
-- else the error reply. A scope guards the state subtree of the same name
-- ("content.draft" guards /content/draft): a write whose path is inside that subtree, or
-- contains it, must present the live lease (its id, or "<scope>#<fencing token>"). Any
-- lease presented must be live, the writer's own and current (not superseded): a stale
-- or expired lease never authorises a write.

local function tokens_overlap(a, b)
  for n = 1, math.min(#a, #b) do
    if a[n] ~= b[n] then return false end
  end
  return true
end

local function lease_guard(lk, actor, presented_text, paths, now)
  local ok, presented = pcall(cjson.decode, presented_text)
  if not ok or type(presented) ~= "table" then
    return fail("INVALID", "leases must be a list of lease ids or scope#token", {field = "lease"})
  end
  local flat = redis.call("HGETALL", lk)
  if #flat == 0 and #presented == 0 then return nil end
  local by_id, by_fence, named = {}, {}, 0
  for n = 1, #presented do
    local p = presented[n]
    if type(p) ~= "string" then
      return fail("INVALID", "leases must be a list of lease ids or scope#token", {field = "lease"})
    end
    local scope, fence = string.match(p, "^(.+)#(%d+)$")
    if scope then by_fence[scope] = tonumber(fence) else by_id[p] = true end
    named = named + 1
  end
  local matched, live = 0, {}
  for n = 1, #flat, 2 do
    if string.sub(flat[n], 1, 1) ~= "@" then
      local l = cjson.decode(flat[n + 1])
      local is_live = lease_live(l, now)
      local shown = by_id[l.id] or by_fence[l.scope] ~= nil
      if shown then
        matched = matched + 1
        if l.status == "active" and not is_live then return lease_expired_error(l) end
        if not is_live or l.agent_id ~= actor
            or (by_fence[l.scope] ~= nil and by_fence[l.scope] ~= l.fence) then
          return lease_conflict(l, "the lease presented for " .. l.scope .. " is not the live "
            .. "lease of " .. actor .. " (current token " .. int(l.fence) .. ", " .. l.status .. ")")
        end
      end
      if is_live then live[#live + 1] = {l, shown} end
    end
  end
  if matched < named then
    return fail("LEASE_CONFLICT", "a lease presented is not current on this intent",
      {field = "lease"})
  end
  for n = 1, #live do
    local l, shown = live[n][1], live[n][2]
    if not shown then
      local guarded = scope_tokens(l.scope)
      for m = 1, #paths do
        if tokens_overlap(guarded, paths[m]) then
          return lease_conflict(l, "/" .. table.concat(paths[m], "/") .. " is guarded by the lease of "
            .. l.agent_id .. " on " .. l.scope .. " until " .. iso_time(tonumber(l.expires_us)))
        end
      end
    end
  end
  return nil
end
