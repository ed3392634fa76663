-- finish: record the final outcome of one tick's execution (the workpool's durable
-- on_complete, delivered at least once: a tick already in the history is a no-op).
-- KEYS: 1-6, 7 = the cron hash, 8 = its history. ARGV: now, id, tick, status, error.
-- Reply: "OK" | "GONE" (the cron was deleted, e.g. by its own execution) | "DUP"
local jk = KEYS[7] -- KEYS[8], its history, is written through hkey(id)
local tick, status, err = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local h = redis.call("HMGET", jk, "id", "last_finished", "last_started", "started_at",
  "history_len", "attempts")
if h[1] == false then
  return "GONE"
end
local ts = rk_fmt(tick)
if in_history(h[1], tick) then
  return "DUP"
end
local entry = {tick = ts, status = status, finished_at = rk_fmt(NOW)}
if num(h[3]) == tick and h[4] then
  entry.started_at = h[4]
  entry.duration_ms = rk_fmt(NOW - tonumber(h[4]))
  entry.attempts = tonumber(h[6])
end
if err ~= "" then
  entry.error = err
end
push_history(h[1], entry, tonumber(h[5]) or 20)
local lfin = num(h[2])
if lfin == nil or tick >= lfin then
  redis.call("HSET", jk, "last_finished", ts, "last_status", status)
  if err ~= "" then
    redis.call("HSET", jk, "last_error", err)
  else
    redis.call("HDEL", jk, "last_error")
  end
  if entry.duration_ms then
    redis.call("HSET", jk, "last_duration_ms", entry.duration_ms)
  end
end
stat(status)
event("finished", {id = h[1], tick = ts, status = status})
return "OK"
