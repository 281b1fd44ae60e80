-- A bid, with an optional maximum the server bids up to (proxy bidding; docs/auctions.md).
-- Checks in order: the idempotency key, the auction is open by the Redis clock, the bidder is not barred by the
-- merchant nor banned from the room, the amount is at least the next bid (with a maximum that covers the next bid,
-- the amount is raised to it). Every price set is a bid in the log.
-- KEYS[1] - auction hash: state, ends_at, price, leader, leader_name, leader_max, bids, seq, starting_bid,
--           increments (JSON [[from, step], ...]), mode, extend_ms, extensions, version
-- KEYS[2] - each bidder's highest bid (hash user id -> JSON {name, amount, seq})
-- KEYS[3] - idempotency keys (hash "<user id>\n<key>" -> the answer JSON)
-- KEYS[4] - bid log (stream: seq, user, name, amount, proxy, at), copied to PostgreSQL by the clock
-- KEYS[5] - bidders the merchant barred (set)
-- KEYS[6] - the room's banned users and devices (set, room:{r}:banned)
-- ARGV[1] - user id
-- ARGV[2] - device id ("" for none)
-- ARGV[3] - idempotency key
-- ARGV[4] - amount
-- ARGV[5] - maximum (0: none; below the amount counts as the amount)
-- ARGV[6] - the bidder's name, as the room sees it
-- Returns {verdict, answer JSON}: verdict "leading" (the bidder leads), "outbid" (a proxy answered: still behind),
-- "raised" (the leader raised their maximum), "existing" (the key's earlier answer, nothing moved), or a refusal:
-- unknown_auction, auction_closed, barred, banned, too_low (the answer is {next_bid}); a refusal moves nothing.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local user, name = ARGV[1], ARGV[6]
local idem = user .. '\n' .. ARGV[3]
local done = redis.call('HGET', KEYS[3], idem)
if done then
  return {'existing', done}
end
local a = redis.call('HMGET', KEYS[1], 'state', 'ends_at', 'price', 'leader', 'leader_name', 'leader_max', 'bids',
  'seq', 'starting_bid', 'increments', 'mode', 'extend_ms', 'extensions', 'version')
if not a[1] then
  return {'unknown_auction', ''}
end
local ends = tonumber(a[2])
if a[1] ~= 'open' or now >= ends then
  return {'auction_closed', ''}
end
if redis.call('SISMEMBER', KEYS[5], user) == 1 then
  return {'barred', ''}
end
if redis.call('SISMEMBER', KEYS[6], user) == 1 or (ARGV[2] ~= '' and redis.call('SISMEMBER', KEYS[6], ARGV[2]) == 1) then
  return {'banned', ''}
end
local tiers = cjson.decode(a[10])
local function step(price)
  local size = tiers[1][2]
  for _, tier in ipairs(tiers) do
    if price < tier[1] then
      break
    end
    size = tier[2]
  end
  return size
end
local price, leader, leader_name, leader_max = tonumber(a[3]), a[4], a[5], tonumber(a[6])
local bids, seq, extensions, version = tonumber(a[7]), tonumber(a[8]), tonumber(a[13]), tonumber(a[14])
local amount, max = tonumber(ARGV[4]), tonumber(ARGV[5])
if max < amount then
  max = amount
end
local next_bid = tonumber(a[9])
if bids > 0 then
  next_bid = price + step(price)
end
local function bid(who, who_name, value, proxy)
  seq = seq + 1
  bids = bids + 1
  redis.call('XADD', KEYS[4], '*', 'seq', seq, 'user', who, 'name', who_name, 'amount', value, 'proxy', proxy,
    'at', now)
  redis.call('HSET', KEYS[2], who, cjson.encode({name = who_name, amount = value, seq = seq}))
end
local verdict, lost = 'leading', ''
if user == leader then
  if max <= leader_max then
    return {'too_low', cjson.encode({next_bid = next_bid, leading = true})}
  end
  leader_max = max
  verdict = 'raised'
else
  if amount < next_bid and tonumber(ARGV[5]) >= next_bid then
    amount = next_bid -- a maximum that covers the next bid bids it (the bidder saw an older price)
  end
  if amount < next_bid then
    return {'too_low', cjson.encode({next_bid = next_bid})}
  end
  if leader == '' then
    price = amount
    bid(user, name, amount, 0)
    leader, leader_name, leader_max = user, name, max
  elseif max <= leader_max then
    -- the leader's maximum answers: they stay in front; at an equal maximum the earlier (the leader) keeps it
    bid(user, name, max, max > amount and 1 or 0)
    price = math.min(leader_max, max + step(max))
    bid(leader, leader_name, price, 1)
    verdict, lost = 'outbid', user
  else
    if leader_max > price then
      bid(leader, leader_name, leader_max, 1)
    end
    price = math.max(amount, math.min(max, leader_max + step(leader_max)))
    bid(user, name, price, price > amount and 1 or 0)
    lost = leader
    leader, leader_name, leader_max = user, name, max
  end
  if a[11] == 'anti_snipe' and ends - now < tonumber(a[12]) then
    ends = now + tonumber(a[12])
    extensions = extensions + 1
  end
end
version = version + 1
redis.call('HSET', KEYS[1], 'price', price, 'leader', leader, 'leader_name', leader_name, 'leader_max', leader_max,
  'bids', bids, 'seq', seq, 'ends_at', ends, 'extensions', extensions, 'version', version)
local answer = cjson.encode({outcome = verdict, price = price, leader = leader, leader_name = leader_name,
  bids = bids, ends_at = ends, extensions = extensions, version = version, lost = lost, at = now})
redis.call('HSET', KEYS[3], idem, answer)
return {verdict, answer}
