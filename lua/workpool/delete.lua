-- delete: remove one finished item that has no callback pending (retrier cleanup).
-- ARGV: now, opts, id. Reply "OK" | "NOT_COMPLETED" | "CALLBACK_PENDING" | "NOT_FOUND"
local id = ARGV[3]
local wk = wkey(id)
local st = redis.call("HMGET", wk, "state", "expires_at")
if not st[1] or (st[2] and tonumber(st[2]) <= NOW) then
  return "NOT_FOUND"
end
if st[1] ~= "finished" then
  return "NOT_COMPLETED"
end
if redis.call("ZSCORE", K_OUTBOX, id) then
  -- its on_complete is still owed (at least once): deleting would drop it
  return "CALLBACK_PENDING"
end
redis.call("DEL", wk)
redis.call("ZREM", K_DONE, id)
redis.call("ZREM", K_DLQ, id)
return "OK"
