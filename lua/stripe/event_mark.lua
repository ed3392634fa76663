-- Record progress of a claimed event, fenced by the claim's token (a holder whose
-- lease was taken over changes nothing). KEYS: 1 P:evt:<id>
-- ARGV: 1 now|"", 2 token, 3 action ("applied" | "release" | "done"), 4 retention ms,
--       5 error text (release), 6 "1" when the default sync has run (release)
local now = rk_now(ARGV[1])
local key = KEYS[1]
local rec = redis.call("HMGET", key, "token", "state", "applied")
if rec[1] ~= ARGV[2] or rec[2] ~= "processing" then return "STALE" end
local action = ARGV[3]
if action == "applied" then
  redis.call("HSET", key, "applied", "1", "applied_at", rk_fmt(now))
  return "OK"
end
if action == "release" then
  local state = "received"
  if rec[3] == "1" or ARGV[6] == "1" then
    state = "applied"
    redis.call("HSET", key, "applied", "1")
  end
  redis.call("HSET", key, "state", state, "last_error", ARGV[5], "updated_at", rk_fmt(now))
  redis.call("HINCRBY", key, "failures", 1)
  redis.call("HDEL", key, "lease_until")
  return "OK"
end
sk_done(key, now, tonumber(ARGV[4]))
return "OK"
