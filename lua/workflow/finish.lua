-- finish: the terminal transition (success, failed or canceled), once. A poll's
-- finish is fenced by generation and journal length; a cancel takes any generation,
-- bumps it, ends the in-progress steps as canceled and returns them (work items and
-- children for Python to cancel). The on_complete obligation (ocs=pending) is set
-- in the same write when there is a callback or a parent to notify.
-- KEYS[1] W, KEYS[2] W:ip. ARGV: now, gen ("" any), steps ("" any), kind, result, error
-- Reply: {"ok", gen, owed ("1" when on_complete is owed), {n, kind, meta, child}...} or
-- {"missing"|"notrunning"|"stale"}.
local now = rk_now(ARGV[1])
local w = KEYS[1]
local st = redis.call("HMGET", w, "state", "gen", "steps", "oc", "parent")
if not st[1] then
  return {"missing"}
end
if st[1] ~= "running" then
  return {"notrunning"}
end
if (ARGV[2] ~= "" and st[2] ~= ARGV[2]) or (ARGV[3] ~= "" and st[3] ~= ARGV[3]) then
  return {"stale"}
end
local kind = ARGV[4]
redis.call("HSET", w, "state", kind, "result", ARGV[5], "error", ARGV[6],
  "finished", rk_fmt(now))
local owed = "0"
if (st[4] and st[4] ~= "") or (st[5] and st[5] ~= "") then
  redis.call("HSET", w, "ocs", "pending")
  owed = "1"
end
local gen = tonumber(st[2])
local out = {"ok", "", owed}
if kind == "canceled" then
  gen = gen + 1
  redis.call("HSET", w, "gen", gen)
  for _, n in ipairs(redis.call("SMEMBERS", KEYS[2])) do
    local e = redis.call("HMGET", wf_skey(w, n), "kind", "meta", "child")
    wf_done(w, n, "canceled", "", "", now)
    out[#out + 1] = {n, e[1] or "", e[2] or "", e[3] or ""}
  end
  redis.call("DEL", KEYS[2])
end
out[2] = tostring(gen)
return out
