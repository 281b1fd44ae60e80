-- May this user post to the room's chat now? Counts the message against the rate limit and slow mode.
-- KEYS[1] - banned users (set)
-- KEYS[2] - muted users (hash user -> muted until, ms)
-- KEYS[3] - the user's rate-limit counter
-- KEYS[4] - the user's slow-mode marker
-- ARGV[1] - user id
-- ARGV[2] - now, ms
-- ARGV[3] - messages allowed per window
-- ARGV[4] - window, seconds
-- ARGV[5] - slow mode, seconds between messages (0 = off)
-- Returns "ok", "banned", "muted:<seconds left>", "rate_limited:<seconds left>" or "slow_mode:<seconds left>".
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  return 'banned'
end
local muted_until = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if muted_until > tonumber(ARGV[2]) then
  return 'muted:' .. math.ceil((muted_until - tonumber(ARGV[2])) / 1000)
end
local count = tonumber(redis.call('GET', KEYS[3]) or '0')
if count >= tonumber(ARGV[3]) then
  return 'rate_limited:' .. math.max(redis.call('TTL', KEYS[3]), 1)
end
if tonumber(ARGV[5]) > 0 then
  if not redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[5]) then
    return 'slow_mode:' .. math.max(redis.call('TTL', KEYS[4]), 1)
  end
end
if redis.call('INCR', KEYS[3]) == 1 then
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return 'ok'
