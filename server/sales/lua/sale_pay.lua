-- Mark a held order paid, if it is the caller's and its hold has not expired (by the Redis clock).
-- KEYS[1] - sale hash (sale:{id}): available, held, paid, version
-- KEYS[2] - orders (hash order id -> order JSON)
-- KEYS[3] - holds (sorted set order id, scored by expiry ms)
-- KEYS[4] - order log (stream)
-- KEYS[5] - groups, KEYS[6] - group members, KEYS[7] - open groups, KEYS[8] - the board (group.lua; a group offer's)
-- ARGV[1] - order id
-- ARGV[2] - user id of the payer
-- ARGV[3] - payment reference (the provider's authorization id)
-- ARGV[4] - the payer's idempotency key for this payment
-- Returns {verdict, order JSON or "", now, group JSON or ""}; verdict is "paid" (also when the same payment key
-- paid it before: a retry after a lost reply) or a refusal: unknown_order, not_your_order, already_paid,
-- order_cancelled, hold_expired, group_closed (nothing moved). The group is the order's group after the payment
-- (opened by its leader's, filled by the N-th), "" for a flash sale's order or a refusal.
local G = {sale = KEYS[1], orders = KEYS[2], holds = KEYS[3], log = KEYS[4], groups = KEYS[5], member = KEYS[6],
  open = KEYS[7], board = KEYS[8]}
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
if order.status == 'paid' then
  return {order.payment_key == ARGV[4] and 'paid' or 'already_paid', raw, now, ''}
end
if order.status == 'cancelled' then
  return {'order_cancelled', raw, now, ''}
end
if order.status ~= 'held' or now >= order.hold_expires_at then
  return {'hold_expired', raw, now, ''}
end
local unpayable = order.group_id and group_unpayable(G, order, now)
if unpayable then
  return {unpayable, raw, now, ''}
end
redis.call('HINCRBY', KEYS[1], 'held', -order.quantity)
redis.call('HINCRBY', KEYS[1], 'paid', order.quantity)
redis.call('HINCRBY', KEYS[1], 'version', 1)
order.status = 'paid'
order.paid_at = now
order.payment_ref = ARGV[3]
order.payment_key = ARGV[4]
order.version = (order.version or 0) + 1
raw = cjson.encode(order)
redis.call('HSET', KEYS[2], ARGV[1], raw)
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('XADD', KEYS[4], '*', 'change', 'paid', 'data', raw)
return {'paid', raw, now, order.group_id and group_paid(G, order, now) or ''}
