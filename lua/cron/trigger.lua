-- trigger: fire an extra tick now (subject to the overlap rule). The tick is marked
-- fired here and enqueued by Python right after; if that never happens, the next
-- claim records it as lost after the grace.
-- KEYS: 1-6, 7 = the cron hash. ARGV: now, id.
-- Reply: {"OK", tick, retry, timeout_ms} | {"BUSY"} | {"NOT_FOUND"}
local jk, id = KEYS[7], ARGV[2]
if redis.call("EXISTS", jk) == 0 then
  return {"NOT_FOUND"}
end
if busy_check(id, jk) then
  return {"BUSY"}
end
local h = redis.call("HMGET", jk, "last_fired", "last_finished", "last_started", "retry",
  "timeout_ms")
local tick = math.floor(NOW)
for i = 1, 3 do
  local t = num(h[i])
  if t ~= nil and tick <= t then
    tick = t + 1
  end
end
redis.call("HSET", jk, "last_fired", rk_fmt(tick), "fired_at", rk_fmt(NOW))
stat("triggered")
event("fired", {id = id, tick = rk_fmt(tick), manual = true})
return {"OK", rk_fmt(tick), h[4] or "", h[5] or ""}
