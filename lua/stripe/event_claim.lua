-- Claim a verified webhook event for processing (spec §7.4).
-- KEYS: 1 P:evt:<id> (HASH), 2 P:events (ZSET id -> received ms: the dedupe log),
--       3 P:evb:<id> (STRING: the event's body, for replay; its own, shorter expiry)
-- ARGV: 1 now|"", 2 lease ms, 3 type, 4 created (s), 5 body, 6 retention ms,
--       7 log cap, 8 id, 9 signature timestamp (s), 10 tolerance (s, 0 = none),
--       11 body retention ms (0 = the body is not kept)
-- Reply: {"DONE"} | {"BUSY", lease_until} | {"CLAIMED", token, applied "1"/"0"}
--        | {"TOO_OLD", now} (the signature's timestamp is outside the tolerance
--        on this clock: nothing is written)
local now = rk_now(ARGV[1])
local key, id = KEYS[1], ARGV[8]
local tolerance = tonumber(ARGV[10])
if tolerance > 0 and tonumber(ARGV[9]) < now / 1000 - tolerance then
  return { "TOO_OLD", rk_fmt(now) }
end
local rec = redis.call("HMGET", key, "state", "lease_until", "applied", "token")
if rec[1] == "done" then
  redis.call("HINCRBY", key, "duplicates", 1)
  return { "DONE" }
end
if rec[1] == "processing" and tonumber(rec[2]) > now then
  redis.call("HINCRBY", key, "duplicates", 1)
  return { "BUSY", rec[2] }
end
local token = (tonumber(rec[4]) or 0) + 1
local retention = tonumber(ARGV[6])
redis.call("HSET", key, "state", "processing", "lease_until", rk_fmt(now + tonumber(ARGV[2])),
  "token", token, "type", ARGV[3], "created", ARGV[4], "updated_at", rk_fmt(now))
if rec[1] == false then
  redis.call("HSET", key, "received_at", rk_fmt(now), "applied", "0")
  local keep = tonumber(ARGV[11])
  if keep > 0 then
    redis.call("SET", KEYS[3], ARGV[5], "PX", math.ceil(math.min(keep, retention)))
  end
end
redis.call("PEXPIRE", key, math.ceil(retention))
-- the dedupe log: bounded by retention and by count
redis.call("ZADD", KEYS[2], now, id)
redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", "(" .. rk_fmt(now - retention))
redis.call("ZREMRANGEBYRANK", KEYS[2], 0, -tonumber(ARGV[7]) - 1)
redis.call("PEXPIRE", KEYS[2], math.ceil(retention))
return { "CLAIMED", tostring(token), rec[3] or "0" }
