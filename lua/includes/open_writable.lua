-- @include "open_intent"
-- @include "terminal"
-- open_writable(ik, id, expected, fields): open_intent for a change of state: also
-- refuses a closed intent (CLOSED) and, when the caller gave the version it read
-- (expected ~= ""), any other current version (CONFLICT). fields[1] must be "status".
local function open_writable(ik, id, expected, fields)
  local cur, err = open_intent(ik, id, fields)
  if cur == nil then return nil, err end
  if TERMINAL[cur[2]] then
    return nil, fail("CLOSED", "intent " .. id .. " is " .. cur[2] .. " and no longer changes",
      {status = cur[2]})
  end
  if expected ~= "" and tonumber(expected) ~= tonumber(cur[1]) then
    return nil, fail("CONFLICT", "intent " .. id .. " is at version " .. cur[1] .. ", not "
      .. expected, {current_version = tonumber(cur[1])})
  end
  return cur
end
