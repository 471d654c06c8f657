-- @include "terminal"
-- The lifecycle of RFC-0001/0002 (+ suspended_awaiting_input). Mirrors bus/statuses.py;
-- a test checks that both tables are the same. Terminal statuses have no exits.
local STATUSES = {"draft", "active", "blocked", "suspended_awaiting_input", "completed", "abandoned"}
local TRANSITIONS = {
  draft = {active = true, blocked = true, abandoned = true},
  active = {blocked = true, suspended_awaiting_input = true, completed = true, abandoned = true},
  blocked = {active = true, abandoned = true},
  suspended_awaiting_input = {active = true, blocked = true, abandoned = true},
  completed = {},
  abandoned = {},
}

local function status_index(name)
  for i = 1, #STATUSES do
    if STATUSES[i] == name then return i end
  end
  return nil
end
