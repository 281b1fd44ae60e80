-- Claim, or confirm, telling the room about the sale's next step, so one process tells it (at least once).
-- Steps, in order: 0 created, 1 started, 2 sold out (every unit paid; none held or reserved for a group), 3 ended. A step whose moment
-- passed unannounced is skipped when a later one is due (a sale that ended is not announced started).
-- KEYS[1] - sale hash (sale:{id}): starts_at, ends_at, available, held, announced, announcing, reserved
-- ARGV[1] - "claim" or "done"
-- ARGV[2] - claimer token (claim and done)
-- ARGV[3] - claim: lease ms; done: the step announced
-- Returns the step claimed, or -1 when nothing is due or another process holds the claim (claim);
-- 1 (done).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local sale = redis.call('HMGET', KEYS[1], 'starts_at', 'ends_at', 'available', 'held', 'announced', 'announcing',
  'reserved')
if not sale[1] then
  return -1
end
local announced = tonumber(sale[5])
if ARGV[1] == 'done' then
  if tonumber(ARGV[3]) > announced then
    redis.call('HSET', KEYS[1], 'announced', ARGV[3])
  end
  if sale[6] and string.sub(sale[6], string.find(sale[6], ':') + 1) == ARGV[2] then
    redis.call('HDEL', KEYS[1], 'announcing')
  end
  return 1
end
if sale[6] and tonumber(string.sub(sale[6], 1, string.find(sale[6], ':') - 1)) > now then
  return -1
end
local starts, ends = tonumber(sale[1]), tonumber(sale[2])
local step = -1
if announced < 0 then
  step = 0
elseif announced < 1 and now >= starts and now < ends then
  step = 1
elseif announced == 1 and tonumber(sale[3]) == 0 and tonumber(sale[4]) == 0 and tonumber(sale[7] or '0') == 0 then
  step = 2
elseif announced < 3 and now >= ends then
  step = 3
end
if step >= 0 then
  redis.call('HSET', KEYS[1], 'announcing', (now + tonumber(ARGV[3])) .. ':' .. ARGV[2])
end
return step
