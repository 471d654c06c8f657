--[[
get_leases: every scope's latest lease and the server's clock, read at one instant
(read-only; the client marks leases past their expiry as expired by that clock).

Invariants:
  - nothing is written: an expired lease is recorded by expire_lease or acquire_lease

KEYS:
  [1] leases   hash   {ns:p}:l:<id>

ARGV: (none)

Returns: {now (microseconds), lease JSON, lease JSON, ...}
Errors: (none)
Events: (none)
]]
-- @include "now_us"

local out = {int(now_us())}
local flat = redis.call("HGETALL", KEYS[1])
for n = 1, #flat, 2 do
  if string.sub(flat[n], 1, 1) ~= "@" then out[#out + 1] = flat[n + 1] end
end
return out
