-- Create a room: every field of its record at once, unless the room id is taken.
-- KEYS[1] - room hash (room:{id})
-- KEYS[2] - the merchant's room ids (set)
-- ARGV[1] - room id
-- ARGV[2..] - field, value pairs of the new record
-- Returns 1 when created, 0 when the id is taken (nothing changed).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SADD', KEYS[2], ARGV[1])
return 1
