-- cancel: ARGV now, opts, mode ("flag" | "finish", see cancel_one), class-level
-- log_level ("" = none: spec §3.1, cancel writes only the log level), then ids.
-- Reply: {replies, events, created}; reply per id "CANCELED" | "FLAGGED" | "NOOP" | "NOT_FOUND"
local bad = write_log_level(ARGV[4])
if bad then
  return redis.error_reply(bad)
end
local out = {}
for i = 5, #ARGV do
  out[#out + 1] = cancel_one(ARGV[i], ARGV[3])
end
return {out, EV, CREATED}
