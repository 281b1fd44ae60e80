-- Create a room: every field of its record at once, unless the room id is taken.
-- KEYS[1] - room hash (room:{id})
-- ARGV[1..] - field, value pairs of the new record
-- Returns 1 when created, 0 when the id is taken (nothing changed).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
