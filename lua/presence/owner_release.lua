-- owner_release: KEYS[1] owner key; ARGV 1 value. Compare-and-delete.
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
