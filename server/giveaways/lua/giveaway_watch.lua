-- Credit one watch slot to each person with a room socket open now, once per slot however many sockets or
-- processes they are on (docs/giveaways.md, "Watch time").
-- KEYS[1] - watch time (hash user id -> ms watched)
-- KEYS[2] - the slot each person was last credited (hash user id -> slot number)
-- ARGV[1] - slot length, ms
-- ARGV[2] - when the keys expire (ms since the epoch: after the giveaway)
-- ARGV[3..] - user ids present
-- Returns the number of people credited.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local length = tonumber(ARGV[1])
local slot = tostring(math.floor(now / length))
local credited = 0
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) ~= slot then
    redis.call('HSET', KEYS[2], ARGV[i], slot)
    redis.call('HINCRBY', KEYS[1], ARGV[i], length)
    credited = credited + 1
  end
end
if credited > 0 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
  redis.call('PEXPIREAT', KEYS[2], ARGV[2])
end
return credited
