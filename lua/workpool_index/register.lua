-- register: add a pool name to the namespace's pool index. KEYS[1] the index set.
return redis.call("SADD", KEYS[1], ARGV[1])
