-- register: list a migration name in the instance's registry (creation order even
-- with a frozen clock). KEYS: 1 registry ZSET, 2 its sequence. ARGV: 1 now, 2 name.
if redis.call("ZSCORE", KEYS[1], ARGV[2]) then return 0 end
local seq = redis.call("INCR", KEYS[2])
redis.call("ZADD", KEYS[1], seq, ARGV[2])
return 1
