-- A bidder barred or let back, in one running auction (the merchant's bar list is in PostgreSQL).
-- KEYS[1] - auction hash
-- KEYS[2] - barred bidders (set)
-- ARGV[1] - user id
-- ARGV[2] - "bar" or "unbar"
-- Returns 1 when the auction's keys exist (the change made), 0 otherwise.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if ARGV[2] == 'bar' then
  redis.call('SADD', KEYS[2], ARGV[1])
else
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 1
