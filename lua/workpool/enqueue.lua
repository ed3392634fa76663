-- enqueue: create work items (all or nothing), write class-level config overrides,
-- then dispatch into free slots. ARGV: now, opts, max_parallelism|"", log_level|"",
-- claim_limit, n, then per item: id, due ("" now | "+ms" | absolute ms), fn, label,
-- kind, args, retry, on_complete, context, timeout_ms, log_level ("" = the pool's).
-- Reply: {claimed, events, created (1: the pool's config record was (re)created)}
local maxp, level = ARGV[3], ARGV[4]
local n = tonumber(ARGV[6])
local bad = config_error(maxp, level)
if bad then
  return redis.error_reply(bad)
end
for i = 0, n - 1 do
  if redis.call("EXISTS", wkey(ARGV[7 + i * 11])) == 1 then
    return redis.error_reply("work id already exists: " .. ARGV[7 + i * 11])
  end
  local lvl = ARGV[17 + i * 11]
  if lvl ~= "" and LEVELS[lvl] == nil then
    return redis.error_reply("log_level must be one of DEBUG, TRACE, INFO, REPORT, WARN, ERROR")
  end
end
write_config(maxp, level)
for i = 0, n - 1 do
  local b = 7 + i * 11
  local id, spec = ARGV[b], ARGV[b + 1]
  local due = NOW
  if spec ~= "" then
    if string.sub(spec, 1, 1) == "+" then
      due = NOW + tonumber(string.sub(spec, 2))
    else
      due = tonumber(spec)
    end
  end
  local wk = wkey(id)
  redis.call("HSET", wk, "fn", ARGV[b + 2], "label", ARGV[b + 3], "kind", ARGV[b + 4],
    "args", ARGV[b + 5], "retry", ARGV[b + 6], "on_complete", ARGV[b + 7],
    "context", ARGV[b + 8], "timeout_ms", ARGV[b + 9], "attempts", 0, "canceled", 0,
    "token", 0, "enqueued_at", rk_fmt(NOW))
  if ARGV[b + 10] ~= "" then
    redis.call("HSET", wk, "log_level", ARGV[b + 10])
  end
  due = bound_due(due, id)
  add_pending(id, wk, due)
  redis.call("ZADD", K_LIVE, rk_fmt(NOW), id)
  redis.call("HINCRBY", K_STATS, "enqueued", 1)
  emit("INFO", "enqueued", {work_id = id, fn_name = ARGV[b + 3], run_at = ms(due),
    enqueued_at = ms(NOW)})
end
return {dispatch(tonumber(ARGV[5]), nil), EV, CREATED}
