-- Dead-letter a follow-up job that exhausted its attempts (bounded list).
-- KEYS: 1 P:dead. ARGV: 1 record (JSON), 2 max length
redis.call("RPUSH", KEYS[1], ARGV[1])
redis.call("LTRIM", KEYS[1], -tonumber(ARGV[2]), -1)
return redis.call("LLEN", KEYS[1])
