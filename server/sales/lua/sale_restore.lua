-- Rebuild a sale's keys from the record after Redis lost them (server.sales.repair): terms, orders, the
-- counters and per-user units they add up to, idempotency keys, holds, and an empty log with its group.
-- KEYS[1] - sale hash (sale:{id}), KEYS[2] - orders, KEYS[3] - units per user, KEYS[4] - idempotency keys,
-- KEYS[5] - holds, KEYS[6] - order log (stream)
-- KEYS[7] - groups, KEYS[8] - group members, KEYS[9] - open groups, KEYS[10] - the board, KEYS[11] - refunds
--           (a group-buy offer's, group.lua)
-- ARGV[1] - sale id
-- ARGV[2] - terms as a JSON object (merchant_id, room_id, product, price, currency, per_user_limit, hold_ms,
--           quantity, starts_at, ends_at, created_at)
-- ARGV[3] - JSON array of order JSON strings, the newest state of each order
-- ARGV[4] - JSON array of [change, order or group JSON]: changes the record lacks, appended to the log for the
--           backup
-- ARGV[5] - JSON array of group JSON strings, the state of each group (a group-buy offer's; else [])
-- ARGV[6] - JSON array of refunded order ids whose money is still to go back
-- Returns {available, held, paid}; a group offer's reserved units and group counts follow from its groups. The stock version jumps to the Redis clock (ms), past any version a
-- viewer saw, so every viewer takes the rebuilt stock.
local G = {sale = KEYS[1], orders = KEYS[2], log = KEYS[6], groups = KEYS[7], member = KEYS[8], open = KEYS[9],
  board = KEYS[10]}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11])
local terms = cjson.decode(ARGV[2])
for name, value in pairs(terms) do
  redis.call('HSET', KEYS[1], name, value)
end
local held, paid = 0, 0
for _, raw in ipairs(cjson.decode(ARGV[3])) do
  local order = cjson.decode(raw)
  redis.call('HSET', KEYS[2], order.id, raw)
  redis.call('HSET', KEYS[4], order.user_id .. '\n' .. order.idempotency_key, order.id)
  if order.status == 'held' or order.status == 'paid' then
    redis.call('HINCRBY', KEYS[3], order.user_id, order.quantity)
    if order.status == 'held' then
      held = held + order.quantity
      redis.call('ZADD', KEYS[5], order.hold_expires_at, order.id)
    else
      paid = paid + order.quantity
    end
  end
end
local counts = {reserved = 0, forming = 0, filled = 0, failed = 0}
for _, raw in ipairs(cjson.decode(ARGV[5])) do
  local group = cjson.decode(raw)
  redis.call('HSET', KEYS[7], group.id, raw)
  if group.state == 'pending' or group.state == 'open' then
    counts.reserved = counts.reserved + group.size - #group.members
    for _, member in ipairs(group.members) do
      redis.call('HSET', KEYS[8], member.user_id, group.id)
    end
  end
  if group.state == 'open' then
    counts.forming = counts.forming + 1
  elseif counts[group.state] then
    counts[group.state] = counts[group.state] + 1
  end
  group_list(G, group)
end
for _, id in ipairs(cjson.decode(ARGV[6])) do
  redis.call('ZADD', KEYS[11], now, id)
end
if terms.group then
  redis.call('HSET', KEYS[1], 'reserved', counts.reserved, 'forming', counts.forming, 'filled', counts.filled,
    'failed', counts.failed)
end
local available = tonumber(terms.quantity) - held - paid - counts.reserved
local announced = -1
if now >= tonumber(terms.ends_at) then
  announced = 3
elseif now >= tonumber(terms.starts_at) then
  announced = 1
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'available', available, 'held', held, 'paid', paid, 'version', now,
  'announced', announced)
redis.call('XGROUP', 'CREATE', KEYS[6], 'ledger', '0', 'MKSTREAM')
for _, item in ipairs(cjson.decode(ARGV[4])) do
  redis.call('XADD', KEYS[6], '*', 'change', item[1], 'data', item[2])
end
return {available, held, paid}
