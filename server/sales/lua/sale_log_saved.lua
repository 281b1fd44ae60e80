-- Order-log entries now in the record (PostgreSQL): confirm them to the consumer group and delete them, so
-- the log keeps only what the record lacks.
-- KEYS[1] - order log (stream, group "ledger")
-- ARGV[1] - the consumer group; ARGV[2..] - entry ids
-- Returns the number of entries deleted.
redis.call('XACK', KEYS[1], unpack(ARGV))
return redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
