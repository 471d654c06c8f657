-- iso_time(us): RFC 3339 UTC text ("2026-11-22T00:26:59.725003Z") for microseconds since
-- the epoch. Redis' Lua has no os.date, so this is the days-to-civil-date arithmetic
-- (proleptic Gregorian, as in Howard Hinnant's date algorithms); exact for any date
-- after 1970 that a double holds to the microsecond.
local function iso_time(us)
  local secs = math.floor(us / 1000000)
  local micro = us - secs * 1000000
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp + 3
  if mp >= 10 then month = mp - 9 end
  local year = yoe + era * 400
  if month <= 2 then year = year + 1 end
  return string.format("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", year, month, day,
    math.floor(rem / 3600), math.floor((rem % 3600) / 60), rem % 60, micro)
end
