-- snapshot(ik, sk): the reply shape every intent-returning script shares:
-- {flat intent hash, flat state hash}; bus/codec.py decodes it.
local function snapshot(ik, sk)
  return {redis.call("HGETALL", ik), redis.call("HGETALL", sk)}
end
