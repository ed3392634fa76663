-- remove: delete one entry and its index members.
-- KEYS[1] entry, KEYS[2] idx, KEYS[3] exp; ARGV[1] member. Reply: 1 if it existed.
local n = redis.call("DEL", KEYS[1])
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("ZREM", KEYS[3], ARGV[1])
return n
