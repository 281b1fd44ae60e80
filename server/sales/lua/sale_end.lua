-- End a sale now (the host ends it early). Holds already taken stay payable until they expire.
-- KEYS[1] - sale hash (sale:{id}): ends_at, version
-- Returns {now, ends_at}, or {} for no sale. Ending an ended sale changes nothing.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = redis.call('HGET', KEYS[1], 'ends_at')
if not ends then
  return {}
end
if now < tonumber(ends) then
  ends = now
  redis.call('HSET', KEYS[1], 'ends_at', now)
  redis.call('HINCRBY', KEYS[1], 'version', 1)
end
return {now, tonumber(ends)}
