-- Statuses that no longer change (RFC-0001): what scripts other than set_status need to
-- know of the lifecycle. Mirrors bus/statuses.py TERMINAL.
local TERMINAL = {completed = true, abandoned = true}
