-- create: a new running workflow at generation 0.
-- KEYS[1] W. ARGV: now, name, args, ctx, on_complete, parent, pstep, pgen, batch, seq
-- Reply: {"ok", created} or {"exists"}.
local now = rk_now(ARGV[1])
if redis.call("EXISTS", KEYS[1]) == 1 then
  return {"exists"}
end
redis.call("HSET", KEYS[1], "name", ARGV[2], "args", ARGV[3], "ctx", ARGV[4], "oc", ARGV[5],
  "parent", ARGV[6], "pstep", ARGV[7], "pgen", ARGV[8], "batch", ARGV[9], "seq", ARGV[10],
  "gen", 0, "state", "running", "steps", 0, "created", rk_fmt(now))
return {"ok", rk_fmt(now)}
