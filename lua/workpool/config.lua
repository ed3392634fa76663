-- config: validate and store max_parallelism / log_level.
-- ARGV: now, opts, max_parallelism|"", log_level|"". Reply {max_parallelism, log_level}
local maxp, level = ARGV[3], ARGV[4]
local bad = config_error(maxp, level)
if bad then
  return redis.error_reply(bad)
end
if maxp ~= "" or level ~= "" then
  write_config(maxp, level)
end
return {tostring(max_parallelism()), redis.call("HGET", K_CFG, "log_level") or O.default_log_level}
