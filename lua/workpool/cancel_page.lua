-- cancel_page: cancel one page of live work, newest first, enqueued at or before
-- `before`. ARGV: now, opts, mode, before|"", offset, limit.
-- Reply: {acted (canceled or flagged), seen, kept (still live: flagged/no-op), events}
local before = ARGV[4]
if before == "" then
  before = rk_fmt(NOW)
end
local ids = redis.call("ZREVRANGEBYSCORE", K_LIVE, before, "-inf", "LIMIT", tonumber(ARGV[5]),
  tonumber(ARGV[6]))
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
return {acted, #ids, kept, EV}
