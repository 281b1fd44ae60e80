-- Close an auction whose end has come (the Redis clock; a late anti-snipe bid may have moved the end).
-- KEYS[1] - auction hash
-- Returns {verdict, JSON {price, leader, leader_name, bids, ends_at, extensions, version}}: verdict "closed" (now),
-- "already" (closed before: the same fields), "not_due" (still open: see ends_at) or "unknown" (no such keys).
local a = redis.call('HMGET', KEYS[1], 'state', 'ends_at', 'price', 'leader', 'leader_name', 'bids', 'extensions',
  'version')
if not a[1] then
  return {'unknown', ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local verdict, version = 'already', tonumber(a[8])
if a[1] == 'open' then
  if now < tonumber(a[2]) then
    verdict = 'not_due'
  else
    verdict = 'closed'
    version = version + 1
    redis.call('HSET', KEYS[1], 'state', 'closed', 'version', version)
  end
end
return {verdict, cjson.encode({price = tonumber(a[3]), leader = a[4], leader_name = a[5], bids = tonumber(a[6]),
  ends_at = tonumber(a[2]), extensions = tonumber(a[7]), version = version})}
