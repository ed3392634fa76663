-- restart: re-run a finished workflow, keeping the journal up to a step (number, or
-- up to and including the last entry of a name; "all" keeps everything). Deleted
-- event steps keep their events (cleanup deletes them).
-- KEYS[1] W, KEYS[2] W:ip. ARGV: now, mode (num|name|all), value
-- Reply: {"ok", gen, from} or {"missing"|"running"|"noname"}.
local w = KEYS[1]
local st = redis.call("HMGET", w, "state", "gen", "steps")
if not st[1] then
  return {"missing"}
end
if st[1] == "running" then
  return {"running"}
end
local steps = tonumber(st[3])
local from = steps
if ARGV[2] == "num" then
  from = math.min(tonumber(ARGV[3]), steps)
elseif ARGV[2] == "name" then
  from = nil
  for n = steps - 1, 0, -1 do
    if redis.call("HGET", wf_skey(w, n), "name") == ARGV[3] then
      from = n
      break
    end
  end
  if not from then
    return {"noname"}
  end
end
for n = from, steps - 1 do
  -- an event still waiting for a deleted step goes back to "created" (a later await
  -- or send by name finds it again; it never completes a step of the new journal)
  local eid = redis.call("HGET", wf_skey(w, n), "event")
  if eid and eid ~= "" then
    local ek = wf_ekey(w, eid)
    local e = redis.call("HMGET", ek, "state", "ename", "step")
    if e[1] == "waiting" and tonumber(e[3]) == n then
      wf_ev_move(w, eid, e[2], "waiting", "created")
      redis.call("HSET", ek, "state", "created")
      redis.call("HDEL", ek, "step", "waiting_at")
    end
  end
  redis.call("DEL", wf_skey(w, n))
end
local gen = tonumber(st[2]) + 1
redis.call("HSET", w, "steps", from, "gen", gen, "state", "running")
redis.call("HDEL", w, "result", "error", "finished", "ocs")
redis.call("DEL", KEYS[2])
return {"ok", tostring(gen), tostring(from)}
