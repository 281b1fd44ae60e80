-- A room's top sharers: kept in its record (for joining viewers' snapshots) and published, if the room exists.
-- KEYS[1] - room hash (room:{id})
-- ARGV[1] - the room's channel
-- ARGV[2] - the top sharers (JSON list)
-- ARGV[3] - the bus message of the `sharers` event
-- Returns 1, or 0 when there is no such room (nothing written).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'sharers', ARGV[2])
redis.call('PUBLISH', ARGV[1], ARGV[3])
return 1
