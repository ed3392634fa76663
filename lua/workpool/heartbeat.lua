-- heartbeat: renew the leases of running attempts. ARGV: now, opts, then id, token
-- pairs. Reply per pair: "OK" | "CANCELED" (flagged, still renewed) | "DETACHED"
-- (finished as canceled while running, cancel mode "finish": may run to its end, its
-- report will be dropped) | "STALE" (the lease is lost: stop now)
local out = {}
local lease = NOW + O.lease_ms
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local wk = wkey(id)
  local st = redis.call("HMGET", wk, "state", "token", "canceled", "result_kind")
  if st[1] == "finished" and st[2] == token and st[4] == "canceled" then
    out[#out + 1] = "DETACHED"
  elseif st[1] == "running" and st[2] == token then
    redis.call("HSET", wk, "lease_until", rk_fmt(lease))
    redis.call("ZADD", K_RUNNING, "XX", rk_fmt(lease), id)
    out[#out + 1] = st[3] == "1" and "CANCELED" or "OK"
  else
    out[#out + 1] = "STALE"
  end
end
return out
