-- pump: one round of background work for a pool: reap expired leases, dispatch due
-- work, claim due callbacks, and emit the periodic report.
-- ARGV: now, opts, claim_limit, callback_limit, then random numbers in [0, 1).
-- Reply: {reannounce, claimed, callbacks, next_wake_ms|"", events}
local limit = tonumber(ARGV[3])
local rand_i = 5
local function rand()
  local r = tonumber(ARGV[rand_i] or "0.5")
  rand_i = rand_i + 1
  return r
end
-- 0. a gap in the pump rounds on the server clock: every worker pumps at least once a
-- second, so no round for more than stall_gap_ms means nobody could renew a lease
-- meanwhile (the server was stopped or unreachable, or no worker ran). A running
-- attempt whose lease expired unseen in the gap gets one fresh lease before it may be
-- reaped -- once per unrenewed lease (graced_until): its worker, if alive, renews or
-- reports (a body that finished during a stall is not run again); a dead one's
-- attempt is reaped a lease later. An injected clock is moved by the test: no gaps.
if ARGV[1] == "" then
  local prev = tonumber(redis.call("HGET", K_STATS, "pump_at") or "")
  redis.call("HSET", K_STATS, "pump_at", rk_fmt(NOW))
  if prev and NOW - prev > O.stall_gap_ms then
    local lease = rk_fmt(NOW + O.lease_ms)
    local graced = 0
    for _, id in ipairs(redis.call("ZRANGEBYSCORE", K_RUNNING, "(" .. rk_fmt(prev), rk_fmt(NOW))) do
      local wk = wkey(id)
      local st = redis.call("HMGET", wk, "state", "lease_until", "graced_until")
      if st[1] == "running" and st[2] ~= st[3] then
        redis.call("HSET", wk, "lease_until", lease, "graced_until", lease)
        redis.call("ZADD", K_RUNNING, lease, id)
        graced = graced + 1
      end
    end
    if graced > 0 then
      redis.call("HINCRBY", K_STATS, "stall_graced", graced)
      emit("WARN", "stall_grace", {gap_ms = ms(NOW - prev), leases = graced})
    end
  end
end
-- 1. leases
local reannounce = {}
local expired = redis.call("ZRANGEBYSCORE", K_RUNNING, "-inf", rk_fmt(NOW), "LIMIT", 0, 64)
for _, id in ipairs(expired) do
  local wk = wkey(id)
  local st = redis.call("HMGET", wk, "state", "token", "label", "attempts", "worker")
  if st[1] == "dispatched" then
    -- not begun within the dispatch lease: its arq job may still be waiting in a
    -- backlogged queue, or be lost, or be held by a dead worker. Extend the lease under
    -- the same token and let Python look at the queue (rkit/workpool reannounce): a
    -- queued job is left alone, a lost one re-enqueued under the same job id, and only
    -- one held by a dead worker gets a new token (redispatch.lua). So there is at most
    -- one live arq job per attempt, however long the queue takes to drain.
    local lease = NOW + O.dispatch_lease_ms
    redis.call("HSET", wk, "lease_until", rk_fmt(lease))
    redis.call("ZADD", K_RUNNING, rk_fmt(lease), id)
    reannounce[#reannounce + 1] = {id, st[2]}
  elseif st[1] == "running" then
    redis.call("HINCRBY", K_STATS, "lost", 1)
    emit("WARN", "lost", {work_id = id, fn_name = st[3], attempt = tonumber(st[4]),
      worker = st[5], lost_at = ms(NOW)})
    finish_attempt(id, wk, "failed", O.lost_error, "0", rand(), false, "")
  else
    redis.call("ZREM", K_RUNNING, id) -- a slot without live work: free it
  end
end
-- 2. due work
local claimed = dispatch(limit, nil)
-- 3. callbacks
local callbacks = {}
local due = redis.call("ZRANGEBYSCORE", K_OUTBOX, "-inf", rk_fmt(NOW), "LIMIT", 0,
  tonumber(ARGV[4]))
for _, id in ipairs(due) do
  local wk = wkey(id)
  local r = redis.call("HMGET", wk, "on_complete", "context", "result_kind", "result", "error",
    "oc_attempts")
  local n = tonumber(r[6] or "0") or 0
  if r[1] and r[1] ~= "" and n >= O.oc_retry.max_attempts then
    -- every attempt was claimed, none reported back (its worker died or the handler
    -- hung past the claim lease): the budget is spent, do not redeliver forever
    dead_letter_callback(id, wk, "on_complete not acknowledged after " .. n
      .. " attempt(s) (worker lost or handler hung)", n)
  elseif r[1] and r[1] ~= "" then
    redis.call("ZADD", K_OUTBOX, rk_fmt(NOW + O.oc_lease_ms), id)
    redis.call("HINCRBY", wk, "oc_attempts", 1)
    callbacks[#callbacks + 1] = {id, r[1], r[2] or "", r[3], r[4] or "", r[5] or ""}
  else
    redis.call("ZREM", K_OUTBOX, id)
  end
end
-- 4. report (spec §4.13 cadence)
local last = tonumber(redis.call("HGET", K_STATS, "last_report_ts") or "")
if last == nil then
  redis.call("HSET", K_STATS, "last_report_ts", rk_fmt(NOW))
elseif NOW - last >= O.report_ms then
  local s = redis.call("HMGET", K_STATS, "r_completed", "r_succeeded", "r_failed", "r_retries",
    "r_canceled")
  local c = {}
  for i = 1, 5 do
    c[i] = tonumber(s[i] or "0")
  end
  local function rate(num, den)
    if den <= 0 then
      return 0
    end
    return math.floor(num / den * 10000 + 0.5) / 10000
  end
  emit("REPORT", "report", {completed = c[1], succeeded = c[2], failed = c[3], retries = c[4],
    canceled = c[5], last_report_ts = ms(last), running = redis.call("ZCARD", K_RUNNING),
    backlog = redis.call("ZCOUNT", K_PENDING, "-inf", rk_fmt(NOW)),
    failure_rate = rate(c[3] + c[4], c[1]), permanent_failure_rate = rate(c[3], c[1] - c[4])})
  local nxt = last + O.report_ms
  if NOW - nxt > O.report_ms / 2 then
    nxt = NOW
  end
  redis.call("HSET", K_STATS, "last_report_ts", rk_fmt(nxt), "r_completed", 0, "r_succeeded", 0,
    "r_failed", 0, "r_retries", 0, "r_canceled", 0)
end
-- 5. when anything is next due
local wake = nil
for _, k in ipairs({K_PENDING, K_RUNNING, K_OUTBOX}) do
  local first = redis.call("ZRANGE", k, 0, 0, "WITHSCORES")
  if first[2] then
    local t = tonumber(first[2])
    if k == K_PENDING and max_parallelism() <= redis.call("ZCARD", K_RUNNING) then
      t = nil -- saturated: a completion will dispatch it
    end
    if t and (wake == nil or t < wake) then
      wake = t
    end
  end
end
local wake_s = ""
if wake then
  wake_s = rk_fmt(math.max(0, wake - NOW))
end
return {reannounce, claimed, callbacks, wake_s, EV}
