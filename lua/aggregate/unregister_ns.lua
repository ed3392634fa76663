-- unregister_ns: forget a namespace whose tree was dropped. KEYS registry ZSET.
-- ARGV: member. Reply: 1 when it was listed.
return redis.call("ZREM", KEYS[1], ARGV[1])
