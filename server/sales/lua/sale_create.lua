-- Create a flash sale: its terms, and all its units available. Times come from the Redis clock.
-- KEYS[1] - sale hash (sale:{id})
-- KEYS[2] - order log (stream): made here with its consumer group "ledger", which copies it to PostgreSQL
-- ARGV[1] - sale id
-- ARGV[2] - terms as JSON object of strings and numbers (merchant_id, room_id, product, price, currency, ...)
-- ARGV[3] - quantity
-- ARGV[4] - start, ms since the epoch; 0 = now + ARGV[5]
-- ARGV[5] - countdown before the start, ms (used when ARGV[4] is 0)
-- ARGV[6] - duration, ms
-- Returns {now, starts_at, ends_at}, or an error "EXISTS" when the sale id is taken.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('EXISTS sale exists')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local starts = tonumber(ARGV[4])
if starts == 0 then
  starts = now + tonumber(ARGV[5])
end
local ends = starts + tonumber(ARGV[6])
for name, value in pairs(cjson.decode(ARGV[2])) do
  redis.call('HSET', KEYS[1], name, value)
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'quantity', ARGV[3], 'available', ARGV[3], 'held', 0, 'paid', 0,
  'version', 0, 'starts_at', starts, 'ends_at', ends, 'created_at', now, 'announced', -1)
redis.call('XGROUP', 'CREATE', KEYS[2], 'ledger', '0', 'MKSTREAM')
return {now, starts, ends}
