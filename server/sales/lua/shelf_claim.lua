-- A product's shelf points to a new sale, unless another process opened one first.
-- KEYS[1] - the merchant's shelves (hash: product id -> sale id)
-- ARGV[1] - product id
-- ARGV[2] - the sale id the caller found ('' for none)
-- ARGV[3] - the new sale id
-- Returns 1 when set, or the sale id another process set.
local now = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if now ~= ARGV[2] then
  return now
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
