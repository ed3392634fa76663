-- cancel_page: cancel one page of live work, newest first, enqueued at or before
-- `before`. ARGV: now, opts, mode, class-level log_level|"" (written, spec §3.1),
-- before|"", offset, limit.
-- Reply: {acted (canceled or flagged), seen, kept (still live: flagged/no-op), events,
-- created}
local bad = write_log_level(ARGV[4])
if bad then
  return redis.error_reply(bad)
end
local before = ARGV[5]
if before == "" then
  before = rk_fmt(NOW)
end
local ids = redis.call("ZREVRANGEBYSCORE", K_LIVE, before, "-inf", "LIMIT", tonumber(ARGV[6]),
  tonumber(ARGV[7]))
local acted, kept = 0, 0
for _, id in ipairs(ids) do
  local r = cancel_one(id, ARGV[3])
  if r ~= "NOOP" then
    acted = acted + 1
  end
  if redis.call("ZSCORE", K_LIVE, id) then
    kept = kept + 1
  end
end
return {acted, #ids, kept, EV, CREATED}
