-- create_event: a "created" event of a running workflow, to be awaited by id.
-- KEYS[1] W. ARGV: now, wid, name, ename. Reply: {"ok", eid} or {"missing"|"notrunning"}.
local now = rk_now(ARGV[1])
local s = redis.call("HGET", KEYS[1], "state")
if not s then
  return {"missing"}
end
if s ~= "running" then
  return {"notrunning"}
end
return {"ok", wf_ev_new(KEYS[1], ARGV[2], ARGV[3], ARGV[4], now)}
