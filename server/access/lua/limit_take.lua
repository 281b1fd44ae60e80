-- Take one token from each of several token buckets, all or none: a request that any bucket refuses takes nothing.
-- A request already counted (its marker is there: a retry of the same attempt) takes nothing and passes.
-- KEYS[i] - bucket i (hash: tokens, at ms), i = 1 .. #KEYS - 1
-- KEYS[#KEYS] - the request's marker (string with a TTL)
-- ARGV[1] - now, ms
-- ARGV[2] - "1" when the marker counts (a retry passes), "0" when every call is a new request
-- ARGV[1 + 2i] - bucket i's capacity (a burst)
-- ARGV[2 + 2i] - bucket i's refill, ms per token
-- Returns 0 when taken (or a retry), else the ms until the emptiest refusing bucket has a token again.
local now = tonumber(ARGV[1])
local marker = KEYS[#KEYS]
local marked = ARGV[2] == '1'
if marked and redis.call('EXISTS', marker) == 1 then
  return 0
end
local levels = {}
local wait = 0
for i = 1, #KEYS - 1 do
  local capacity = tonumber(ARGV[1 + 2 * i])
  local refill = tonumber(ARGV[2 + 2 * i])
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  local tokens = tonumber(state[1]) or capacity
  local at = tonumber(state[2]) or now
  tokens = math.min(capacity, tokens + math.max(0, now - at) / refill)
  levels[i] = tokens
  if tokens < 1 then
    wait = math.max(wait, math.ceil((1 - tokens) * refill))
  end
end
if wait > 0 then
  return wait
end
local longest = 1
for i = 1, #KEYS - 1 do
  local lifetime = math.ceil(tonumber(ARGV[1 + 2 * i]) * tonumber(ARGV[2 + 2 * i]))
  redis.call('HSET', KEYS[i], 'tokens', levels[i] - 1, 'at', now)
  redis.call('PEXPIRE', KEYS[i], lifetime)
  longest = math.max(longest, lifetime)
end
if marked then
  redis.call('SET', marker, '1', 'PX', longest)
end
return 0
