-- register: add pool names to the namespace's pool index (idempotent).
-- KEYS[1] the index set; ARGV the names. Reply: how many were not listed.
return redis.call("SADD", KEYS[1], unpack(ARGV))
