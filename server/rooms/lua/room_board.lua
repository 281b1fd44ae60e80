-- A board of the room (its top sharers, a group-buy offer's open groups): kept in its record (for joining viewers'
-- snapshots) and published, if the room exists.
-- KEYS[1] - room hash (room:{id})
-- ARGV[1] - the room's channel
-- ARGV[2] - the record field (sharers, groups:<sale id>)
-- ARGV[3] - the board (JSON)
-- ARGV[4] - the bus message of its event
-- Returns 1, or 0 when there is no such room (nothing written).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[4])
return 1
