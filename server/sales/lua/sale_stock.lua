-- The sale's stock, if it changed since it was last published, at most once per interval (the caller publishes it).
-- KEYS[1] - sale hash (sale:{id}): available, held, paid, quantity, version, stock_version, stock_at
-- ARGV[1] - minimum interval between publishes, ms
-- Returns {available, held, paid, quantity, version} (now counted as published), 0 (nothing new) or
-- -1 (published too recently: try again soon). Stock events carry the version, so a reader keeps the
-- newest whatever order processes publish them in.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'available', 'held', 'paid', 'quantity', 'version', 'stock_version', 'stock_at')
if not s[1] or s[5] == s[6] then
  return 0
end
if now - tonumber(s[7] or '0') < tonumber(ARGV[1]) then
  return -1
end
redis.call('HSET', KEYS[1], 'stock_version', s[5], 'stock_at', now)
return {tonumber(s[1]), tonumber(s[2]), tonumber(s[3]), tonumber(s[4]), tonumber(s[5])}
