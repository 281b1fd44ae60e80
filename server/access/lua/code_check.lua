-- Is this the one-time code sent to the destination? Counts the attempt; the code is gone once right or exhausted.
-- KEYS[1] - the destination's code (hash: digest, attempts)
-- ARGV[1] - the digest of the code given
-- ARGV[2] - attempts allowed
-- Returns "ok", "none" (no code, or expired), "exhausted" (too many wrong tries) or "wrong:<tries left>".
local digest = redis.call('HGET', KEYS[1], 'digest')
if not digest then
  return 'none'
end
if digest == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 'ok'
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
local left = tonumber(ARGV[2]) - attempts
if left <= 0 then
  redis.call('DEL', KEYS[1])
  return 'exhausted'
end
return 'wrong:' .. left
