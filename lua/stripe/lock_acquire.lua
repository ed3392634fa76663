-- Take the get-or-create lock of one user. KEYS: 1 lock. ARGV: 1 token, 2 ttl ms
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then return 1 end
return 0
