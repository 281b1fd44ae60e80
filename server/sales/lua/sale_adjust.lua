-- A host changes a sale that is on: start a scheduled sale now, add units, or let it run longer. Times from the
-- Redis clock.
-- KEYS[1] - sale hash (sale:{id}): starts_at, ends_at, quantity, available, version
-- ARGV[1] - what: 'start', 'restock' or 'extend'
-- ARGV[2] - restock: units to add; extend: ms to add; start: unused
-- ARGV[3] - restock: the most units a sale may have; extend: the longest a sale may run, ms; start: unused
-- Returns {'ok', now}, or {verdict, now}: 'unknown_sale', 'ended', 'too_many' (restock past ARGV[3]),
-- 'too_long' (extend past ARGV[3]). Starting a sale that has started changes nothing and is 'ok'.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'starts_at', 'ends_at', 'quantity')
if not s[1] then
  return {'unknown_sale', now}
end
local starts, ends, quantity = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
if now >= ends then
  return {'ended', now}
end
local what, amount, most = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if what == 'start' then
  if now >= starts then
    return {'ok', now}
  end
  redis.call('HSET', KEYS[1], 'starts_at', now, 'ends_at', now + (ends - starts))
elseif what == 'restock' then
  if quantity + amount > most then
    return {'too_many', now}
  end
  redis.call('HINCRBY', KEYS[1], 'quantity', amount)
  redis.call('HINCRBY', KEYS[1], 'available', amount)
else
  if ends + amount - starts > most then
    return {'too_long', now}
  end
  redis.call('HSET', KEYS[1], 'ends_at', ends + amount)
end
redis.call('HINCRBY', KEYS[1], 'version', 1)
return {'ok', now}
