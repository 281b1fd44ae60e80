-- Append one durable event to a room's history and publish it, changing the room's record in the same step.
-- KEYS[1] - room hash (room:{id})
-- KEYS[2] - room history stream (room:{id}:history); entry id "<offset>-1", field "e" = the event as encoded
-- ARGV[1] - the room's shard channel (SPUBLISH)
-- ARGV[2] - the event, encoded by server.protocol (without its offset)
-- ARGV[3] - how many events the history keeps
-- ARGV[4..] - field, value pairs to set on the room hash with the event
-- Publishes "<offset> <event>" (server.protocol.bus_message). Returns the event's offset, or an
-- error "NOROOM" when the room does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NOROOM room does not exist')
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], offset .. '-1', 'e', ARGV[2])
redis.call('SPUBLISH', ARGV[1], offset .. ' ' .. ARGV[2])
return offset
