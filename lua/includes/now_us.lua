-- now_us(): microseconds since the epoch from the server clock (one clock for every
-- timestamp and expiry decision). Returned as a number: exact below 2^53.
local function now_us()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- int(n): an integer as decimal text; tostring() would print 1.7e+15.
local function int(n)
  return string.format("%.0f", n)
end
