-- Finish or release a claimed event; move the reconcile cursor.
-- KEYS: 1 evt, 2 cursor   ARGV: 1 now, 2 P, 3 op (done|release|cursor), 4 token,
--       5 retention ms, 6 cursor value ("" = leave the cursor)
-- done: state done, lease cleared, expires after the retention (then the cursor, if
-- given); release: clear the lease if ``token`` still holds it; cursor: only the cursor.
local op = ARGV[3]
if op == "done" then
  -- lease cleared (0), kept ``retention`` ms: the dedupe window
  redis.call("HSET", KEYS[1], "state", "done", "lease_until", "0")
  redis.call("PEXPIRE", KEYS[1], ARGV[5])
elseif op == "release" then
  if redis.call("HGET", KEYS[1], "token") == ARGV[4] then
    redis.call("HSET", KEYS[1], "lease_until", "0")
  end
end
if ARGV[6] ~= "" then
  redis.call("SET", KEYS[2], ARGV[6])
end
return 1
