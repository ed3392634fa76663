-- begin (spec §7.3 mig_begin): create the state if missing and take the lease for a
-- run. ARGV: 1 now, 2 mode ("resume" | "explicit"), 3 cursor flag, 4 cursor,
-- 5 fingerprint, 6 token, 7 lease ms, 8 batch size, 9 next (JSON list, opaque),
-- 10 reset ("0"/"1").
-- Reply: {"busy"} (a live lease of another token) | {"done"} | {"fp_mismatch"} |
--        {"go", cursor flag, cursor, seq, created ("1" when this call created it)}
local S = KEYS[1]
local now = rk_now(ARGV[1])
local created = "0"
if redis.call("EXISTS", S) == 0 then
  redis.call("HSET", S, "created", rk_fmt(now), "processed", "0", "done", "0",
    "started", rk_fmt(now), "state", "idle", "seq", "0", "fp", ARGV[5])
  created = "1"
end
local holder = mg_live(S, now)
-- a canceled run's lease is free: its runner stops at its next claim, and a batch
-- it may still be executing commits nothing (the token changes here)
if holder and redis.call("HGET", S, "cancel") == "1" then holder = nil end
if holder and holder ~= ARGV[6] then return {"busy"} end
if ARGV[2] == "explicit" then
  mg_set_cursor(S, ARGV[3], ARGV[4])
  redis.call("HSET", S, "done", "0", "processed", "0", "started", rk_fmt(now), "fp", ARGV[5])
  redis.call("HDEL", S, "ended", "error")
  redis.call("DEL", KEYS[2])
else
  if redis.call("HGET", S, "done") == "1" then
    if holder then mg_drop_lease(S) end
    return {"done"}
  end
  if redis.call("HGET", S, "fp") ~= ARGV[5] then return {"fp_mismatch"} end
end
mg_drop_lease(S)
local seq = redis.call("HINCRBY", S, "seq", 1)
redis.call("HSET", S, "token", ARGV[6], "lease", rk_fmt(now + tonumber(ARGV[7])),
  "state", "running", "batch", ARGV[8], "next", ARGV[9], "reset", ARGV[10])
local flag, cur = mg_cursor(S)
return {"go", flag, cur, tostring(seq), created}
