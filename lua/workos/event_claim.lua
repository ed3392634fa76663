-- Claim an event for processing (dedupe + lease).
-- KEYS: 1 evt   ARGV: 1 now, 2 P, 3 lease_ms, 4 token, 5 type, 6 retention_ms
-- Returns {"DUP", changed} | {"BUSY"} | {"OK", applied 0/1, changed 0/1}
local now = rk_now(ARGV[1])
local h = redis.call("HMGET", KEYS[1], "state", "lease_until", "changed")
local state = h[1]
if state == "done" then
  return {"DUP", tonumber(h[3]) or 0}
end
if state and (tonumber(h[2]) or 0) > now then
  return {"BUSY"}
end
if not state then
  state = "processing"
  redis.call("HSET", KEYS[1], "state", state, "changed", 0, "type", ARGV[5])
end
redis.call("HSET", KEYS[1], "lease_until", rk_fmt(now + tonumber(ARGV[3])), "token", ARGV[4])
-- bounded even if the claimer dies: the record goes with the event retention
redis.call("PEXPIRE", KEYS[1], ARGV[6])
local applied = 0
if state == "applied" then applied = 1 end
return {"OK", applied, tonumber(h[3]) or 0}
