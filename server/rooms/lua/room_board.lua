-- A board of the room (its top sharers, a group-buy offer's open groups, a giveaway's or an auction's card): kept in
-- its record (for joining viewers' snapshots) and published, if the room exists.
-- KEYS[1] - room hash (room:{id})
-- ARGV[1] - the room's shard channel (SPUBLISH)
-- ARGV[2] - the record field (sharers, groups:<sale id>, giveaway:<id>, auction:<id>)
-- ARGV[3] - the board (JSON)
-- ARGV[4] - the bus message of its event
-- ARGV[5] - the board's version (0: none); a board not newer than the record's field "version:<field>" is not kept
-- Returns 1, or 0 when there is no such room or the board is older (nothing written).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local version = tonumber(ARGV[5])
if version > 0 then
  local known = tonumber(redis.call('HGET', KEYS[1], 'version:' .. ARGV[2]) or '0')
  if version <= known then
    return 0
  end
  redis.call('HSET', KEYS[1], 'version:' .. ARGV[2], version)
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('SPUBLISH', ARGV[1], ARGV[4])
return 1
