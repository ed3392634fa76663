-- single-flight: claim the lease of one key, or learn whose flight to wait for.
-- KEYS[1] lock; ARGV[1] token, ARGV[2] lease ms.
-- Reply: {"won"} or {"wait", holder token, remaining lease ms}
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then return {"won"} end
return {"wait", redis.call("GET", KEYS[1]), redis.call("PTTL", KEYS[1])}
