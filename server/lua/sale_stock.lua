-- Publish the sale's stock to its room if it changed since the last publish, at most once per interval.
-- Reading and publishing in one step keeps every process's publishes in the order of the stock they show.
-- KEYS[1] - sale hash (sale:{id}): available, held, paid, quantity, version, stock_version, stock_at
-- ARGV[1] - the room's pub/sub channel
-- ARGV[2] - sale id
-- ARGV[3] - minimum interval between publishes, ms
-- Returns 1 (published), 0 (nothing new to publish) or -1 (published too recently: try again soon).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'available', 'held', 'paid', 'quantity', 'version', 'stock_version', 'stock_at')
if not s[1] or s[5] == s[6] then
  return 0
end
if now - tonumber(s[7] or '0') < tonumber(ARGV[3]) then
  return -1
end
redis.call('HSET', KEYS[1], 'stock_version', s[5], 'stock_at', now)
redis.call('PUBLISH', ARGV[1], string.format(
  '{"type":"stock","ts":%d,"sale_id":"%s","available":%d,"held":%d,"sold":%d,"quantity":%d,"version":%d}',
  now, ARGV[2], tonumber(s[1]), tonumber(s[2]), tonumber(s[3]), tonumber(s[4]), tonumber(s[5])))
return 1
