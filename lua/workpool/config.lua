-- config: validate and store max_parallelism / log_level.
-- ARGV: now, opts, max_parallelism|"", log_level|"". Reply {max_parallelism, log_level}
local maxp, level = ARGV[3], ARGV[4]
if maxp ~= "" then
  local m = tonumber(maxp)
  if m == nil or m ~= math.floor(m) or m < 0 then
    return redis.error_reply("max_parallelism must be >= 0")
  end
  if m > O.parallelism_limit then
    return redis.error_reply("max_parallelism must be <= " .. O.parallelism_limit)
  end
end
if level ~= "" and LEVELS[level] == nil then
  return redis.error_reply("log_level must be one of DEBUG, TRACE, INFO, REPORT, WARN, ERROR")
end
if maxp ~= "" then
  redis.call("HSET", K_CFG, "max_parallelism", maxp)
end
if level ~= "" then
  redis.call("HSET", K_CFG, "log_level", level)
end
if maxp ~= "" or level ~= "" then
  redis.call("HSETNX", K_CFG, "created_at", rk_fmt(NOW))
end
return {tostring(max_parallelism()), redis.call("HGET", K_CFG, "log_level") or O.default_log_level}
