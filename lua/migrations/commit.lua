-- commit (spec §7.3 mig_commit): record one processed batch. Compare-and-set on the
-- token and the batch's start cursor, so a late or duplicate batch changes nothing.
-- ARGV: 1 now, 2 token, 3/4 expected cursor (flag, value), 5/6 new cursor,
-- 7 done ("0"/"1"), 8 processed count, 9 lease ms, 10 max failed entries kept,
-- 11.. pairs of (item id, error) for record-and-continue failures.
-- Reply: {"stale"} | {"canceled", seq} | {"done", seq} | {"continue", seq}
local S = KEYS[1]
local now = rk_now(ARGV[1])
if redis.call("HGET", S, "token") ~= ARGV[2] or not mg_cursor_is(S, ARGV[3], ARGV[4]) then
  return {"stale"}
end
mg_set_cursor(S, ARGV[5], ARGV[6])
redis.call("HINCRBY", S, "processed", tonumber(ARGV[8]))
redis.call("HDEL", S, "error", "executing")
local cap = tonumber(ARGV[10])
local i = 11
while i < #ARGV do
  redis.call("HINCRBY", S, "failed_n", 1)
  if redis.call("HEXISTS", KEYS[2], ARGV[i]) == 1 or redis.call("HLEN", KEYS[2]) < cap then
    redis.call("HSET", KEYS[2], ARGV[i], ARGV[i + 1])
  end
  i = i + 2
end
local seq = tostring(redis.call("HINCRBY", S, "seq", 1))
if ARGV[7] == "1" then
  redis.call("HSET", S, "done", "1", "state", "done")
  if not redis.call("HGET", S, "ended") then redis.call("HSET", S, "ended", rk_fmt(now)) end
  mg_drop_lease(S)
  return {"done", seq}
end
if redis.call("HGET", S, "cancel") == "1" then
  redis.call("HSET", S, "state", "canceled")
  mg_drop_lease(S)
  return {"canceled", seq}
end
-- the runner goes on with the next batch at once: this commit claims it too
redis.call("HSET", S, "lease", rk_fmt(now + tonumber(ARGV[9])), "executing", "1")
return {"continue", seq}
