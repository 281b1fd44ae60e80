-- Reserve units of a sale for a user as a hold that expires, unless this purchase was already made.
-- Checks in order: the idempotency key, the sale, its window, the quantity, the user's limit, the stock.
-- KEYS[1] - sale hash (sale:{id}): starts_at, ends_at, per_user_limit, hold_ms, available, held, version, group,
--           winner (an auction's award sale: only that user may hold it) (the hot path: the counters are written
--           with one HSET)
-- KEYS[2] - orders (hash order id -> order JSON)
-- KEYS[3] - units per user (hash user id -> units held or paid)
-- KEYS[4] - idempotency keys (hash "<user id>\n<key>" -> order id)
-- KEYS[5] - holds (sorted set order id, scored by expiry ms)
-- KEYS[6] - order log (stream; its consumer group "ledger" copies each change to PostgreSQL)
-- ARGV[1] - user id
-- ARGV[2] - idempotency key
-- ARGV[3] - quantity
-- ARGV[4] - id for the new order
-- Returns {verdict, order JSON or "", available, now}; verdict is "held" (a new hold), "taken" (the new order's
-- random id is an existing order's: nothing moved, call again with another), "existing"
-- (the key's earlier order, nothing moved) or a refusal: unknown_sale, group_only (a group-buy offer: its units
-- are bought by opening or joining a group, group_reserve.lua), not_the_winner, ended, not_started, bad_quantity,
-- limit_reached, sold_out (nothing moved).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local user = ARGV[1]
local idem = user .. '\n' .. ARGV[2]
local existing = redis.call('HGET', KEYS[4], idem)
if existing then
  return {'existing', redis.call('HGET', KEYS[2], existing), tonumber(redis.call('HGET', KEYS[1], 'available')), now}
end
local sale = redis.call('HMGET', KEYS[1], 'starts_at', 'ends_at', 'per_user_limit', 'hold_ms', 'available', 'held',
  'version', 'group', 'winner')
if not sale[1] then
  return {'unknown_sale', '', 0, now}
end
if sale[8] then
  return {'group_only', '', 0, now}
end
if sale[9] and sale[9] ~= user then
  return {'not_the_winner', '', 0, now}
end
local available = tonumber(sale[5])
if now >= tonumber(sale[2]) then
  return {'ended', '', available, now}
end
if now < tonumber(sale[1]) then
  return {'not_started', '', available, now}
end
local quantity = tonumber(ARGV[3])
if not quantity or quantity < 1 or quantity % 1 ~= 0 then
  return {'bad_quantity', '', available, now}
end
local mine = tonumber(redis.call('HGET', KEYS[3], user) or '0')
if mine + quantity > tonumber(sale[3]) then
  return {'limit_reached', '', available, now}
end
if available < quantity then
  return {'sold_out', '', available, now}
end
if redis.call('HEXISTS', KEYS[2], ARGV[4]) == 1 then
  return {'taken', '', available, now}
end
available = available - quantity
redis.call('HSET', KEYS[1], 'available', available, 'held', tonumber(sale[6]) + quantity, 'version', tonumber(sale[7]) + 1)
redis.call('HINCRBY', KEYS[3], user, quantity)
local expires = now + tonumber(sale[4])
local order = cjson.encode({id = ARGV[4], user_id = user, quantity = quantity, status = 'held', created_at = now,
  hold_expires_at = expires, idempotency_key = ARGV[2], version = 1})
redis.call('HSET', KEYS[2], ARGV[4], order)
redis.call('HSET', KEYS[4], idem, ARGV[4])
redis.call('ZADD', KEYS[5], expires, ARGV[4])
redis.call('XADD', KEYS[6], '*', 'change', 'held', 'data', order)
return {'held', order, available, now}
