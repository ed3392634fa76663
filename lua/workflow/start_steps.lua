-- start_steps: journal a batch of new steps at the frontier, fenced by the
-- generation, the running state and the journal length the poll replayed (a
-- duplicate or stale poll writes nothing). Inline steps arrive already done; event
-- steps run the await transitions (they may complete at once).
-- KEYS[1] W, KEYS[2] W:ip. ARGV: now, gen, expected steps, wid, count, then per
-- step 10 fields: kind, name, args, meta, state, rkind, result, error, ev_id (a
-- workflow step: the child id), ev_ename
-- Reply: {"ok", {n, state, rkind, result, error, event id}...} or {"stale", why}.
local now = rk_now(ARGV[1])
local w = KEYS[1]
local st = redis.call("HMGET", w, "state", "gen", "steps")
if not st[1] then
  return {"stale", "gone"}
end
if st[1] ~= "running" then
  return {"stale", "finished"}
end
if st[2] ~= ARGV[2] then
  return {"stale", "generation"}
end
if st[3] ~= ARGV[3] then
  return {"stale", "journal"}
end
local n0 = tonumber(st[3])
local count = tonumber(ARGV[5])
local wid = ARGV[4]
local out = {"ok"}
for i = 0, count - 1 do
  local b = 5 + i * 10
  local n = n0 + i
  local kind, state = ARGV[b + 1], ARGV[b + 5]
  local sk = wf_skey(w, n)
  redis.call("HSET", sk, "kind", kind, "name", ARGV[b + 2], "args", ARGV[b + 3],
    "meta", ARGV[b + 4], "state", state, "started", rk_fmt(now))
  local rkind, result, err, eid = ARGV[b + 6], ARGV[b + 7], ARGV[b + 8], ""
  if kind == "workflow" then
    redis.call("HSET", sk, "child", ARGV[b + 9])
  end
  if state == "done" then
    redis.call("HSET", sk, "rkind", rkind, "result", result, "error", err,
      "completed", rk_fmt(now))
  elseif kind == "event" then
    local ename = ARGV[b + 10]
    eid = ARGV[b + 9]
    if eid ~= "" then
      if redis.call("EXISTS", wf_ekey(w, eid)) == 0 then
        state, rkind, result, err = "done", "failed", "", "Event not found: " .. eid
        eid = ""
      end
    else
      eid = redis.call("LINDEX", wf_lkey(w, ename, "sent"), 0)
      if not eid then
        eid = redis.call("LINDEX", wf_lkey(w, ename, "created"), 0)
      end
      if not eid then
        eid = wf_ev_new(w, wid, ARGV[b + 2], ename, now)
      end
    end
    if eid ~= "" then
      local ek = wf_ekey(w, eid)
      local e = redis.call("HMGET", ek, "state", "ename", "rkind", "value", "error")
      if e[1] == "sent" then
        wf_ev_move(w, eid, e[2], "sent", nil)
        redis.call("HSET", ek, "state", "consumed", "step", n, "waiting_at", rk_fmt(now),
          "consumed_at", rk_fmt(now))
        state, rkind, result, err = "done", e[3], e[4], e[5]
      elseif e[1] == "created" then
        wf_ev_move(w, eid, e[2], "created", "waiting")
        redis.call("HSET", ek, "state", "waiting", "step", n, "waiting_at", rk_fmt(now))
      else
        state, rkind, result, err = "done", "failed", "", "Event " .. eid .. " already " .. e[1]
      end
    end
    redis.call("HSET", sk, "event", eid, "state", state)
    if state == "done" then
      redis.call("HSET", sk, "rkind", rkind, "result", result, "error", err,
        "completed", rk_fmt(now))
    end
  end
  if state == "pending" then
    redis.call("SADD", KEYS[2], n)
  end
  out[#out + 1] = {tostring(n), state, rkind, result, err, eid}
end
redis.call("HSET", w, "steps", n0 + count)
return out
