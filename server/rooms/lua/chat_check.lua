-- May this user post to the room's chat now? Counts the message against the rate limits and slow mode.
-- KEYS[1] - banned users and devices (set)
-- KEYS[2] - muted users and devices (hash user or device -> muted until, ms)
-- KEYS[3] - the user's rate-limit counter
-- KEYS[4] - the user's slow-mode marker
-- KEYS[5] - the client address's rate-limit counter (all its users together)
-- ARGV[1] - user id
-- ARGV[2] - device id ("" for none): a ban or mute of a guest covers the device it used
-- ARGV[3] - now, ms
-- ARGV[4] - messages allowed per window, per user
-- ARGV[5] - window, seconds
-- ARGV[6] - slow mode, seconds between messages (0 = off)
-- ARGV[7] - messages allowed per window, per address
-- Returns "ok", "banned", "muted:<seconds left>", "rate_limited:<seconds left>" or "slow_mode:<seconds left>".
local now = tonumber(ARGV[3])
local who = {ARGV[1]}
if ARGV[2] ~= '' then
  who[2] = ARGV[2]
end
for _, id in ipairs(who) do
  if redis.call('SISMEMBER', KEYS[1], id) == 1 then
    return 'banned'
  end
end
for _, id in ipairs(who) do
  local muted_until = tonumber(redis.call('HGET', KEYS[2], id) or '0')
  if muted_until > now then
    return 'muted:' .. math.ceil((muted_until - now) / 1000)
  end
end
local limits = {{KEYS[3], tonumber(ARGV[4])}, {KEYS[5], tonumber(ARGV[7])}}
for _, limit in ipairs(limits) do
  if tonumber(redis.call('GET', limit[1]) or '0') >= limit[2] then
    return 'rate_limited:' .. math.max(redis.call('TTL', limit[1]), 1)
  end
end
if tonumber(ARGV[6]) > 0 then
  if not redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[6]) then
    return 'slow_mode:' .. math.max(redis.call('TTL', KEYS[4]), 1)
  end
end
for _, limit in ipairs(limits) do
  if redis.call('INCR', limit[1]) == 1 then
    redis.call('EXPIRE', limit[1], ARGV[5])
  end
end
return 'ok'
