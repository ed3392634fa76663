-- complete_step: record one step's outcome (a workpool item, a sleep or a child
-- workflow finished), guarded by the generation fence: a finished, deleted or
-- restarted workflow or a step no longer pending ignores it. Reply: "poll" when no
-- step is in progress any more (run the next poll), "wait", or "ignored:<why>".
-- A repeated completion of a done step answers "poll" while nothing is in progress,
-- so a redelivered callback whose poll died re-runs it (polls are fenced).
-- KEYS[1] W, KEYS[2] W:ip. ARGV: now, n, gen, rkind, result, error
local now = rk_now(ARGV[1])
local w = KEYS[1]
local st = redis.call("HMGET", w, "state", "gen")
if not st[1] then
  return "ignored:gone"
end
if st[1] ~= "running" then
  return "ignored:finished"
end
if st[2] ~= ARGV[3] then
  return "ignored:generation"
end
local s = redis.call("HGET", wf_skey(w, ARGV[2]), "state")
if not s then
  return "ignored:no step"
end
if not wf_done(w, ARGV[2], ARGV[4], ARGV[5], ARGV[6], now) then
  if redis.call("SCARD", KEYS[2]) == 0 then
    return "poll"
  end
  return "ignored:done"
end
if redis.call("SCARD", KEYS[2]) == 0 then
  return "poll"
end
return "wait"
