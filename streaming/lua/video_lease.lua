-- Give up or renew a room's video ownership, only if this process still holds it.
-- KEYS[1] - the room's video owner (room:{id}:video), a process id
-- ARGV[1] - this process's id
-- ARGV[2] - "release", or the lease to renew in ms
-- Returns 1 when done, 0 when another process (or nobody) holds the room.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == 'release' then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
