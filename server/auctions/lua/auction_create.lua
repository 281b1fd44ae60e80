-- Open an auction: its terms and counters, bidding from now to now + duration (the Redis clock), and the bidders its
-- merchant barred.
-- KEYS[1] - auction hash (room:{r}:auction:<a>)
-- KEYS[2] - barred bidders (set)
-- ARGV[1] - terms: a JSON object of strings and numbers (id, merchant_id, room_id, product, currency, starting_bid,
--           increments, mode, extend_ms, unpaid, pay_ms)
-- ARGV[2] - duration, ms
-- ARGV[3..] - barred user ids
-- Returns {starts_at, ends_at}, or an error "EXISTS" when the id is taken.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('EXISTS auction exists')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = now + tonumber(ARGV[2])
for name, value in pairs(cjson.decode(ARGV[1])) do
  redis.call('HSET', KEYS[1], name, value)
end
redis.call('HSET', KEYS[1], 'state', 'open', 'starts_at', now, 'ends_at', ends, 'price', 0, 'leader', '',
  'leader_name', '', 'leader_max', 0, 'bids', 0, 'seq', 0, 'extensions', 0, 'version', 1)
if #ARGV > 2 then
  redis.call('SADD', KEYS[2], unpack(ARGV, 3))
end
return {now, ends}
