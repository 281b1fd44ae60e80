-- Group buys (docs/group-buys.md): local functions the sale scripts share (server/sales/store.py puts this file
-- ahead of sale_pay, sale_cancel, sale_release, group_reserve and group_clock). Not a script of its own.
-- Each function takes G, the key names of the offer: G.sale (hash: available, reserved, held, paid, version,
-- forming, filled, failed, group = terms JSON), G.orders, G.users, G.holds, G.log, G.groups (hash group id ->
-- group JSON), G.open (sorted set: open groups by expires_at), G.board (sorted set: open groups, closest to
-- filling first), G.member (hash user id -> the pending or open group they are in), G.refunds (sorted set:
-- refunded orders whose money is still to go back, by when to try).
-- A group: {id, leader, size, state (pending, open, filled, failed, cancelled), members = [{order_id, user_id,
-- name, paid, leader}], created_at, opened_at?, expires_at?, closed_at?, version}.
local BOARD = 1e13 -- a board score: empty slots * BOARD + expires_at (fewest slots left first, then soonest)

local function group_load(G, id)
  local raw = redis.call('HGET', G.groups, id)
  return raw and cjson.decode(raw)
end

-- Keep an open group on the board and the deadline list; take any other off.
local function group_list(G, group)
  if group.state == 'open' then
    redis.call('ZADD', G.open, group.expires_at, group.id)
    redis.call('ZADD', G.board, (group.size - #group.members) * BOARD + group.expires_at, group.id)
  else
    redis.call('ZREM', G.open, group.id)
    redis.call('ZREM', G.board, group.id)
  end
end

-- Store the group's new state, list it, log it for the record; its JSON.
local function group_save(G, group)
  group.version = group.version + 1
  group_list(G, group)
  local raw = cjson.encode(group)
  redis.call('HSET', G.groups, group.id, raw)
  redis.call('XADD', G.log, '*', 'change', 'group', 'data', raw)
  return raw
end

-- The member is no longer in a forming group (it closed, or they left it).
local function group_forget(G, group, user)
  if redis.call('HGET', G.member, user) == group.id then
    redis.call('HDEL', G.member, user)
  end
end

-- A group closes: nobody is in it any more.
local function group_close(G, group, state, now)
  group.state = state
  group.closed_at = now
  for _, member in ipairs(group.members) do
    group_forget(G, group, member.user_id)
  end
end

-- A held order of a group goes (cancelled or expired): where its unit goes. The caller takes it off `held`.
-- A member's unit goes back to the group's reserve (the slot is free again); a pending group's leader takes the
-- group with them (its N units back on sale). Returns the group's JSON, or nil when there was no forming group.
local function group_leave(G, order, now)
  local group = group_load(G, order.group_id)
  if not group or (group.state ~= 'pending' and group.state ~= 'open') then
    redis.call('HINCRBY', G.sale, 'available', order.quantity)
    return nil
  end
  if group.state == 'pending' then
    redis.call('HINCRBY', G.sale, 'reserved', 1 - group.size)
    redis.call('HINCRBY', G.sale, 'available', group.size)
    group_close(G, group, 'cancelled', now)
  else
    local kept = {}
    for _, member in ipairs(group.members) do
      if member.order_id ~= order.id then
        table.insert(kept, member)
      end
    end
    group.members = kept
    redis.call('HINCRBY', G.sale, 'reserved', 1)
    group_forget(G, group, order.user_id)
  end
  return group_save(G, group)
end

-- May this held group order be paid now? nil, or the refusal: the group's window passed (the clock fails it).
local function group_unpayable(G, order, now)
  local group = group_load(G, order.group_id)
  if group and group.state == 'open' and now >= group.expires_at then
    return 'group_closed'
  end
  return nil
end

-- The order was paid: its member is paid; a leader's payment opens the group (its window starts), the N-th
-- payment fills it. Returns the group's JSON.
local function group_paid(G, order, now)
  local group = group_load(G, order.group_id)
  local paid = 0
  for _, member in ipairs(group.members) do
    if member.order_id == order.id then
      member.paid = true
    end
    if member.paid then
      paid = paid + 1
    end
  end
  if group.state == 'pending' then
    group.state = 'open'
    group.opened_at = now
    group.expires_at = now + cjson.decode(redis.call('HGET', G.sale, 'group')).window_ms
    redis.call('HINCRBY', G.sale, 'forming', 1)
  end
  if paid == group.size then
    group_close(G, group, 'filled', now)
    redis.call('HINCRBY', G.sale, 'forming', -1)
    redis.call('HINCRBY', G.sale, 'filled', 1)
  end
  return group_save(G, group)
end
