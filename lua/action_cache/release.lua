-- single-flight: end a flight. Release the lease if this caller still holds it,
-- publish the flight's outcome for the callers waiting for it (in any process: they
-- block on the outcome stream) and count the flight's callers in the stats.
-- KEYS[1] lock, KEYS[2] outcome stream, KEYS[3] stats hash
-- ARGV: token, ok "1"/"0", error type, error message, stream TTL ms, then pairs of
-- stats field, increment.
-- Reply: 1 released, 0 not ours (the lease ran out).
local released = 0
if redis.call("GET", KEYS[1]) == ARGV[1] then released = redis.call("DEL", KEYS[1]) end
redis.call("XADD", KEYS[2], "MAXLEN", "8", "*", "t", ARGV[1], "ok", ARGV[2], "e", ARGV[3],
  "m", ARGV[4])
redis.call("PEXPIRE", KEYS[2], ARGV[5])
for i = 6, #ARGV, 2 do
  if ARGV[i + 1] ~= "0" then redis.call("HINCRBY", KEYS[3], ARGV[i], ARGV[i + 1]) end
end
return released
