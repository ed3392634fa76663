-- commit: finish a scheduler round's claims. Per cron only if it still exists, the
-- claim token is ours and next_run is still the claimed tick (else STALE, nothing
-- written: a deleted cron is never resurrected, a stale claim never moves a schedule).
-- ARGV: now, token, then per cron: id, tick, next_run, fired (1/0), misfired count.
-- Reply: one "OK" | "STALE" per cron.
local token = ARGV[2]
local out = {}
local i = 3
while i <= #ARGV do
  local id, tick, nxt = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local fired, missed = ARGV[i + 3] == "1", tonumber(ARGV[i + 4])
  local jk = jkey(id)
  local h = redis.call("HMGET", jk, "claim_token", "next_run", "paused", "last_fired")
  if h[1] ~= token or num(h[2]) ~= tick then
    out[#out + 1] = "STALE"
  else
    redis.call("HSET", jk, "next_run", nxt)
    redis.call("HDEL", jk, "claim_token", "claim_until")
    if fired then
      local lf = num(h[4])
      if lf == nil or tick > lf then
        redis.call("HSET", jk, "last_fired", rk_fmt(tick), "fired_at", rk_fmt(NOW))
      end
      stat("fired")
      event("fired", {id = id, tick = rk_fmt(tick), lag_ms = rk_fmt(NOW - tick)})
    else
      redis.call("HINCRBY", jk, "skipped", 1)
      stat("skipped")
      event("skipped", {id = id, tick = rk_fmt(tick)})
    end
    if missed > 0 then
      stat("misfired", missed)
      event("misfire", {id = id, tick = rk_fmt(tick), missed = missed})
    end
    if h[3] == "1" then
      redis.call("ZREM", K_DUE, id)
    else
      redis.call("ZADD", K_DUE, nxt, id)
    end
    out[#out + 1] = "OK"
  end
  i = i + 5
end
return out
