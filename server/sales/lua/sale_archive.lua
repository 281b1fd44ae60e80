-- Remove a finished sale's keys once nothing more can happen to it and the record has all of it.
-- KEYS[1] - sale hash (sale:{id}): ends_at
-- KEYS[2] - orders, KEYS[3] - units per user, KEYS[4] - idempotency keys
-- KEYS[5] - holds (sorted set): must be empty (every hold paid, expired or cancelled)
-- KEYS[6] - order log (stream): must be empty (the ledger backup deletes each entry once it is in PostgreSQL)
-- KEYS[7] - groups, KEYS[8] - group members, KEYS[9] - the board (a group offer's: removed with it)
-- KEYS[10] - open groups, KEYS[11] - refunds (sorted sets): must be empty (every group closed, every refund made)
-- ARGV[1] - grace after the end, ms (a late reader still finds the sale in Redis meanwhile)
-- Returns 1 (removed, or no sale), 0 (not yet).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = redis.call('HGET', KEYS[1], 'ends_at')
if not ends then
  return 1
end
if now < tonumber(ends) + tonumber(ARGV[1]) or redis.call('ZCARD', KEYS[5]) > 0 or redis.call('XLEN', KEYS[6]) > 0
    or redis.call('ZCARD', KEYS[10]) > 0 or redis.call('ZCARD', KEYS[11]) > 0 then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11])
return 1
