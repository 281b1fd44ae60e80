-- A room's record starts over after it went back: Redis lost its newest writes (a failover to a replica that had not
-- received them), so the offsets above it will name other events. A new epoch tells returning viewers so.
-- KEYS[1] - room hash (room:{id})
-- ARGV[1] - the newest offset a process received for the room
-- ARGV[2] - the epoch that process knows
-- ARGV[3] - the new epoch
-- Returns 1 when the epoch changed; 0 when the room's offset is not below ARGV[1], its epoch is already another one
-- (a process started it over first), or it does not exist.
local offset = tonumber(redis.call('HGET', KEYS[1], 'offset') or '-1')
if offset < 0 or offset >= tonumber(ARGV[1]) or redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'epoch', ARGV[3])
return 1
