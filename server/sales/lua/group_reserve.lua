-- Open a group of a group-buy offer (the leader's hold, and N - 1 units reserved for its slots) or join an open
-- one (a reserved unit becomes the joiner's hold), unless this purchase was already made. One unit per member.
-- Checks in order: the idempotency key, the offer, the buyer's limit, their forming group, then for opening the
-- window and the stock, for joining the group's state, window and slots.
-- KEYS[1] - sale hash (sale:{id}): starts_at, ends_at, per_user_limit, hold_ms, price, group, counters
-- KEYS[2] - orders, KEYS[3] - units per user, KEYS[4] - idempotency keys, KEYS[5] - holds, KEYS[6] - order log
-- KEYS[7] - groups, KEYS[8] - group members, KEYS[9] - open groups, KEYS[10] - the board (group.lua)
-- ARGV[1] - user id
-- ARGV[2] - idempotency key
-- ARGV[3] - id for the new order
-- ARGV[4] - "open" or "join"
-- ARGV[5] - the group: the new group's id (open) or the one to join
-- ARGV[6] - the buyer's display name (shown to the room as a member)
-- Returns {verdict, order JSON or "", now, group JSON or ""}; verdict is "held" (a new hold), "taken" (a random id
-- given, the order's or the new group's, is an existing one's: nothing moved, call again with others), "existing"
-- (the key's earlier order, nothing moved) or a refusal (nothing moved): unknown_sale, not_a_group_offer,
-- limit_reached, in_group (with the group's id as the 4th element), ended, not_started, sold_out, unknown_group,
-- group_not_open, group_closed, group_full.
local G = {sale = KEYS[1], orders = KEYS[2], log = KEYS[6], groups = KEYS[7], member = KEYS[8], open = KEYS[9],
  board = KEYS[10]}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local user = ARGV[1]
local idem = user .. '\n' .. ARGV[2]
local existing = redis.call('HGET', KEYS[4], idem)
if existing then
  return {'existing', redis.call('HGET', KEYS[2], existing), now, ''}
end
local sale = redis.call('HMGET', KEYS[1], 'starts_at', 'ends_at', 'per_user_limit', 'hold_ms', 'available', 'price',
  'group')
if not sale[1] then
  return {'unknown_sale', '', now, ''}
end
if not sale[7] then
  return {'not_a_group_offer', '', now, ''}
end
local terms = cjson.decode(sale[7])
if tonumber(redis.call('HGET', KEYS[3], user) or '0') + 1 > tonumber(sale[3]) then
  return {'limit_reached', '', now, ''}
end
local current = redis.call('HGET', KEYS[8], user)
if current then
  return {'in_group', '', now, current}
end
local taken = redis.call('HEXISTS', KEYS[2], ARGV[3]) == 1
if taken or (ARGV[4] == 'open' and redis.call('HEXISTS', KEYS[7], ARGV[5]) == 1) then
  return {'taken', '', now, ''}
end
local group
local price = tonumber(sale[6])
local member = {order_id = ARGV[3], user_id = user, name = ARGV[6], paid = false, leader = ARGV[4] == 'open'}
if ARGV[4] == 'open' then
  if now >= tonumber(sale[2]) then
    return {'ended', '', now, ''}
  end
  if now < tonumber(sale[1]) then
    return {'not_started', '', now, ''}
  end
  if tonumber(sale[5]) < terms.size then
    return {'sold_out', '', now, ''}
  end
  redis.call('HINCRBY', KEYS[1], 'available', -terms.size)
  redis.call('HINCRBY', KEYS[1], 'reserved', terms.size - 1)
  group = {id = ARGV[5], leader = user, size = terms.size, state = 'pending', members = {member}, created_at = now,
    version = 0}
  if terms.leader_price then
    price = terms.leader_price
  end
else
  group = group_load(G, ARGV[5])
  if not group then
    return {'unknown_group', '', now, ''}
  end
  if group.state == 'pending' then
    return {'group_not_open', '', now, ''}
  end
  if group.state ~= 'open' or now >= group.expires_at then
    return {'group_closed', '', now, ''}
  end
  if #group.members >= group.size then
    return {'group_full', '', now, ''}
  end
  redis.call('HINCRBY', KEYS[1], 'reserved', -1)
  table.insert(group.members, member)
end
redis.call('HINCRBY', KEYS[1], 'held', 1)
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HINCRBY', KEYS[3], user, 1)
redis.call('HSET', KEYS[8], user, group.id)
local expires = now + tonumber(sale[4])
local order = cjson.encode({id = ARGV[3], user_id = user, quantity = 1, status = 'held', created_at = now,
  hold_expires_at = expires, idempotency_key = ARGV[2], version = 1, group_id = group.id, price = price})
redis.call('HSET', KEYS[2], ARGV[3], order)
redis.call('HSET', KEYS[4], idem, ARGV[3])
redis.call('ZADD', KEYS[5], expires, ARGV[3])
redis.call('XADD', KEYS[6], '*', 'change', 'held', 'data', order)
return {'held', order, now, group_save(G, group)}
