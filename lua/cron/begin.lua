-- begin: an execution attempt of one tick starts (inside the workpool's attempt).
-- Only for a cron that still exists, a tick that was legitimately fired (committed,
-- or claimed and enqueued but not yet committed: the scheduler enqueues first) and
-- not yet finished; a retry of the same tick begins again.
-- KEYS: 1-6, 7 = the cron hash. ARGV: now, id, tick, worker.
-- Reply: {"OK", fn, args JSON, attempt} | {"SKIP", reason}
local jk = KEYS[7]
local tick = tonumber(ARGV[3])
local h = redis.call("HMGET", jk, "next_run", "claim_token", "last_fired", "last_finished",
  "last_started", "fn", "args", "id", "overlap")
local allow = h[9] == "allow"
if h[6] == false then
  return {"SKIP", "deleted"}
end
local lf, lfin, ls = num(h[3]), num(h[4]), num(h[5])
local claimed = h[2] ~= false and num(h[1]) == tick
if not (claimed or (lf ~= nil and tick <= lf)) then
  return {"SKIP", "not fired"}
end
if lfin ~= nil and tick <= lfin and (not allow or in_history(h[8], tick)) then
  return {"SKIP", "finished"} -- (overlap "allow": executions may finish out of order)
end
local attempt = 1
if ls == tick then
  attempt = redis.call("HINCRBY", jk, "attempts", 1)
else
  if ls ~= nil and tick < ls and not allow then
    return {"SKIP", "superseded"}
  end
  redis.call("HSET", jk, "last_started", rk_fmt(tick), "started_at", rk_fmt(NOW), "attempts", 1)
end
redis.call("HSET", jk, "exec_worker", ARGV[4])
event("started", {id = h[8], tick = rk_fmt(tick), attempt = attempt})
return {"OK", h[6], h[7], attempt}
