-- The buyer gives a held order up: its units go back on sale.
-- KEYS[1] - sale hash (sale:{id}): available, held, version
-- KEYS[2] - orders (hash order id -> order JSON)
-- KEYS[3] - units per user (hash user id -> units held or paid)
-- KEYS[4] - holds (sorted set order id, scored by expiry ms)
-- KEYS[5] - order log (stream)
-- KEYS[6] - groups, KEYS[7] - group members, KEYS[8] - open groups, KEYS[9] - the board (group.lua; a group offer's)
-- ARGV[1] - order id
-- ARGV[2] - user id of the caller
-- Returns {verdict, order JSON or "", now, group JSON or ""}; verdict is "cancelled" (also when it already was) or
-- a refusal: unknown_order, not_your_order, already_paid, hold_expired (nothing moved). A group order's unit goes
-- back to its group (a member's) or the group is cancelled (a pending group's leader): the group after it.
local G = {sale = KEYS[1], orders = KEYS[2], log = KEYS[5], groups = KEYS[6], member = KEYS[7], open = KEYS[8],
  board = KEYS[9]}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then
  return {'unknown_order', '', now, ''}
end
local order = cjson.decode(raw)
if order.user_id ~= ARGV[2] then
  return {'not_your_order', '', now, ''}
end
if order.status == 'paid' or order.status == 'refunded' then
  return {'already_paid', raw, now, ''}
end
if order.status == 'expired' then
  return {'hold_expired', raw, now, ''}
end
if order.status == 'cancelled' then
  return {'cancelled', raw, now, ''}
end
local group = ''
if order.group_id then
  group = group_leave(G, order, now) or ''
else
  redis.call('HINCRBY', KEYS[1], 'available', order.quantity)
end
redis.call('HINCRBY', KEYS[1], 'held', -order.quantity)
redis.call('HINCRBY', KEYS[1], 'version', 1)
if redis.call('HINCRBY', KEYS[3], order.user_id, -order.quantity) <= 0 then
  redis.call('HDEL', KEYS[3], order.user_id)
end
order.status = 'cancelled'
order.closed_at = now
order.version = (order.version or 0) + 1
raw = cjson.encode(order)
redis.call('HSET', KEYS[2], ARGV[1], raw)
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('XADD', KEYS[5], '*', 'change', 'cancelled', 'data', raw)
return {'cancelled', raw, now, group}
