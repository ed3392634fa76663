-- config: validate and store max_parallelism / log_level; a cap written here is
-- applied at once (due work is dispatched into the free slots, as enqueue does).
-- ARGV: now, opts, max_parallelism|"", log_level|"", claim_limit.
-- Reply {max_parallelism, log_level, claimed, events, created}
local maxp, level = ARGV[3], ARGV[4]
local bad = config_error(maxp, level)
if bad then
  return redis.error_reply(bad)
end
if maxp ~= "" or level ~= "" then
  write_config(maxp, level)
end
local claimed = {}
if maxp ~= "" then
  claimed = dispatch(tonumber(ARGV[5]), nil)
end
return {tostring(max_parallelism()), redis.call("HGET", K_CFG, "log_level") or O.default_log_level,
  claimed, EV, CREATED}
