-- Release holds whose expiry has passed (by the Redis clock): each goes back on sale exactly once.
-- KEYS[1] - sale hash (sale:{id}): available, held, version, starts_at, ends_at, announced
-- KEYS[2] - orders (hash order id -> order JSON)
-- KEYS[3] - units per user (hash user id -> units held or paid)
-- KEYS[4] - holds (sorted set order id, scored by expiry ms)
-- KEYS[5] - order log (stream)
-- KEYS[6] - groups, KEYS[7] - group members, KEYS[8] - open groups, KEYS[9] - the board (group.lua; a group offer's)
-- ARGV[1] - at most this many holds
-- Returns {released, next hold expiry ms (-1: none), now, starts_at, ends_at, announced, groups changed (JSON
-- list)}, or {} for no sale. A group order's unit goes back to its group, or a pending group is cancelled with its
-- leader's hold (group.lua).
local G = {sale = KEYS[1], orders = KEYS[2], log = KEYS[5], groups = KEYS[6], member = KEYS[7], open = KEYS[8],
  board = KEYS[9]}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local sale = redis.call('HMGET', KEYS[1], 'starts_at', 'ends_at', 'announced')
if not sale[1] then
  return {}
end
local released = 0
local groups = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[4], '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))) do
  local raw = redis.call('HGET', KEYS[2], id)
  local order = raw and cjson.decode(raw)
  if order and order.status == 'held' then
    if order.group_id then
      local group = group_leave(G, order, now)
      if group then
        table.insert(groups, group)
      end
    else
      redis.call('HINCRBY', KEYS[1], 'available', order.quantity)
    end
    redis.call('HINCRBY', KEYS[1], 'held', -order.quantity)
    if redis.call('HINCRBY', KEYS[3], order.user_id, -order.quantity) <= 0 then
      redis.call('HDEL', KEYS[3], order.user_id)
    end
    order.status = 'expired'
    order.closed_at = now
    order.version = (order.version or 0) + 1
    raw = cjson.encode(order)
    redis.call('HSET', KEYS[2], id, raw)
    redis.call('XADD', KEYS[5], '*', 'change', 'expired', 'data', raw)
    released = released + 1
  end
  redis.call('ZREM', KEYS[4], id)
end
if released > 0 then
  redis.call('HINCRBY', KEYS[1], 'version', 1)
end
local next_hold = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
return {released, next_hold[2] and tonumber(next_hold[2]) or -1, now, tonumber(sale[1]), tonumber(sale[2]),
  tonumber(sale[3]), groups}
