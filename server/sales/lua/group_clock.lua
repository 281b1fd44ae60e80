-- The clock of a group-buy offer: fail the groups whose window passed, and claim the refunds that are due.
-- A failed group, in one step: each paid member's order is refunded (its unit back on sale, its buyer's limit
-- given back, the order queued for its money to go back), each held member's order expires, the empty slots'
-- reserved units go back on sale. A claimed refund is due again after the lease (its claimer died: another
-- process finishes it; the refund is idempotent).
-- KEYS[1] - sale hash, KEYS[2] - orders, KEYS[3] - units per user, KEYS[4] - holds, KEYS[5] - order log
-- KEYS[6] - groups, KEYS[7] - group members, KEYS[8] - open groups, KEYS[9] - the board, KEYS[10] - refunds
-- ARGV[1] - at most this many groups failed and refunds claimed
-- ARGV[2] - the claim's lease, ms
-- Returns {groups failed (JSON list), refunds claimed (order ids), next window end ms (-1: none), next refund due
-- ms (-1: none), now}, or {} for no sale.
local G = {sale = KEYS[1], orders = KEYS[2], log = KEYS[5], groups = KEYS[6], member = KEYS[7], open = KEYS[8],
  board = KEYS[9]}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {}
end
local limit = tonumber(ARGV[1])
local failed = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[8], '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)) do
  local group = group_load(G, id)
  if group and group.state == 'open' then
    for _, member in ipairs(group.members) do
      local order = cjson.decode(redis.call('HGET', KEYS[2], member.order_id))
      if order.status == 'paid' then
        redis.call('HINCRBY', KEYS[1], 'paid', -order.quantity)
        order.status = 'refunded'
        redis.call('ZADD', KEYS[10], now, order.id)
      elseif order.status == 'held' then
        redis.call('HINCRBY', KEYS[1], 'held', -order.quantity)
        order.status = 'expired'
        redis.call('ZREM', KEYS[4], order.id)
      end
      if order.status == 'refunded' or order.status == 'expired' then
        redis.call('HINCRBY', KEYS[1], 'available', order.quantity)
        if redis.call('HINCRBY', KEYS[3], order.user_id, -order.quantity) <= 0 then
          redis.call('HDEL', KEYS[3], order.user_id)
        end
        order.closed_at = now
        order.version = order.version + 1
        local raw = cjson.encode(order)
        redis.call('HSET', KEYS[2], order.id, raw)
        redis.call('XADD', KEYS[5], '*', 'change', order.status, 'data', raw)
      end
    end
    local empty = group.size - #group.members
    redis.call('HINCRBY', KEYS[1], 'reserved', -empty)
    redis.call('HINCRBY', KEYS[1], 'available', empty)
    redis.call('HINCRBY', KEYS[1], 'forming', -1)
    redis.call('HINCRBY', KEYS[1], 'failed', 1)
    redis.call('HINCRBY', KEYS[1], 'version', 1)
    group_close(G, group, 'failed', now)
    table.insert(failed, group_save(G, group))
  else
    redis.call('ZREM', KEYS[8], id)
  end
end
local claimed = redis.call('ZRANGE', KEYS[10], '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
for _, id in ipairs(claimed) do
  redis.call('ZADD', KEYS[10], now + tonumber(ARGV[2]), id)
end
local next_end = redis.call('ZRANGE', KEYS[8], 0, 0, 'WITHSCORES')
local next_refund = redis.call('ZRANGE', KEYS[10], 0, 0, 'WITHSCORES')
return {failed, claimed, next_end[2] and tonumber(next_end[2]) or -1, next_refund[2] and tonumber(next_refund[2]) or -1,
  now}
