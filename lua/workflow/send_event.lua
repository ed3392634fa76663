-- send_event: deliver a value (or an error) to an event of a running workflow. By
-- id, the event must exist; by name, the oldest waiting, else the oldest created,
-- else a new one. created -> sent (stored); waiting -> consumed and its step done.
-- KEYS[1] W, KEYS[2] W:ip. ARGV: now, wid, mode (id|name), id or name, ename,
-- rkind, value, error
-- Reply: {"poll"|"wait"|"stored", eid, gen, steps} or {"missing"|"notrunning"|"noevent"} or
-- {"state", <state>}.
local now = rk_now(ARGV[1])
local w = KEYS[1]
local st = redis.call("HMGET", w, "state", "gen", "steps")
if not st[1] then
  return {"missing"}
end
if st[1] ~= "running" then
  return {"notrunning"}
end
local eid
if ARGV[3] == "id" then
  eid = ARGV[4]
  if redis.call("EXISTS", wf_ekey(w, eid)) == 0 then
    return {"noevent"}
  end
else
  eid = redis.call("LINDEX", wf_lkey(w, ARGV[5], "waiting"), 0)
  if not eid then
    eid = redis.call("LINDEX", wf_lkey(w, ARGV[5], "created"), 0)
  end
  if not eid then
    eid = wf_ev_new(w, ARGV[2], ARGV[4], ARGV[5], now)
  end
end
local ek = wf_ekey(w, eid)
local e = redis.call("HMGET", ek, "state", "ename", "step")
if e[1] == "created" then
  wf_ev_move(w, eid, e[2], "created", "sent")
  redis.call("HSET", ek, "state", "sent", "rkind", ARGV[6], "value", ARGV[7], "error", ARGV[8],
    "sent_at", rk_fmt(now))
  return {"stored", eid, st[2]}
end
if e[1] ~= "waiting" then
  return {"state", e[1]}
end
wf_ev_move(w, eid, e[2], "waiting", nil)
redis.call("HSET", ek, "state", "consumed", "rkind", ARGV[6], "value", ARGV[7], "error", ARGV[8],
  "sent_at", rk_fmt(now), "consumed_at", rk_fmt(now))
wf_done(w, e[3], ARGV[6], ARGV[7], ARGV[8], now)
if redis.call("SCARD", KEYS[2]) == 0 then
  return {"poll", eid, st[2], st[3]}
end
return {"wait", eid, st[2]}
