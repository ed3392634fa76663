-- Backfill bookkeeping. KEYS: 1 backfill, 2 pending
-- ARGV: 1 now, 2 P, 3 op, 4 work id, 5 value
--   handled: SREM ``value`` from the pending set (its handler call succeeded)
--   finish:  delete the record and the pending set (no more pages)
--   fail:    state failed, error = value; the cursor and pending set are kept
-- finish and fail apply only while the backfill runs under ``work id``.
local op = ARGV[3]
if op == "handled" then
  return redis.call("SREM", KEYS[2], ARGV[5])
end
local h = redis.call("HMGET", KEYS[1], "state", "work_id")
if h[1] ~= "running" or h[2] ~= ARGV[4] then
  return 0
end
if op == "finish" then
  redis.call("DEL", KEYS[1], KEYS[2])
elseif op == "fail" then
  redis.call("HSET", KEYS[1], "state", "failed", "error", ARGV[5])
end
return 1
