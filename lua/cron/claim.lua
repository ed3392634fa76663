-- claim: take up to `limit` due crons for one scheduler round. Each claimed cron is
-- re-scored at its claim deadline (another scheduler re-claims the same tick if this
-- one dies before committing) and carries the claim token.
-- ARGV: now, limit, claim_lease_ms, token.
-- Reply: {now, {{id, tick, kind, ms, cronspec, tz, misfire, retry, timeout_ms, busy}...},
--         earliest due score ("" = none)}
local limit, lease, token = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local ids = redis.call("ZRANGEBYSCORE", K_DUE, "-inf", rk_fmt(NOW), "LIMIT", 0, limit)
local out = {}
for _, id in ipairs(ids) do
  local jk = jkey(id)
  local paused = redis.call("HGET", jk, "paused")
  if paused == false or paused == "1" then
    redis.call("ZREM", K_DUE, id) -- deleted or paused: never scheduled again from here
  else
    local busy = busy_check(id, jk)
    local deadline = rk_fmt(NOW + lease)
    redis.call("HSET", jk, "claim_token", token, "claim_until", deadline)
    redis.call("ZADD", K_DUE, deadline, id)
    local h = redis.call("HMGET", jk, "next_run", "kind", "ms", "cronspec", "tz", "misfire",
      "retry", "timeout_ms")
    out[#out + 1] = {id, h[1], h[2], h[3] or "", h[4] or "", h[5] or "", h[6], h[7] or "",
      h[8] or "", busy and 1 or 0}
  end
end
local first = redis.call("ZRANGE", K_DUE, 0, 0, "WITHSCORES")
return {rk_fmt(NOW), out, first[2] or ""}
