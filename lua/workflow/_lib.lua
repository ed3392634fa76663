-- workflow helpers. KEYS[1] is the workflow hash W; every other key of the workflow
-- shares its hash tag: W:s:<n> journal entries, W:ip in-progress step numbers,
-- W:e:<eid> events, W:en:<E(name)>:<state> FIFO lists of event ids, W:evs event ids.

local function wf_skey(w, n)
  return w .. ":s:" .. n
end

local function wf_ekey(w, eid)
  return w .. ":e:" .. eid
end

local function wf_lkey(w, ename, state)
  return w .. ":en:" .. ename .. ":" .. state
end

-- a new event in state "created"; returns its id
local function wf_ev_new(w, wid, name, ename, now)
  local c = redis.call("HINCRBY", w, "ecount", 1)
  local eid = wid .. ".e" .. c
  redis.call("HSET", wf_ekey(w, eid), "name", name, "ename", ename, "state", "created",
    "created", rk_fmt(now))
  redis.call("SADD", w .. ":evs", eid)
  redis.call("RPUSH", wf_lkey(w, ename, "created"), eid)
  return eid
end

-- move an event id between its name's state lists (nil = none)
local function wf_ev_move(w, eid, ename, from, to)
  if from then
    redis.call("LREM", wf_lkey(w, ename, from), 1, eid)
  end
  if to then
    redis.call("RPUSH", wf_lkey(w, ename, to), eid)
  end
end

-- complete a pending journal entry; returns false when it was not pending
local function wf_done(w, n, rkind, result, err, now)
  local sk = wf_skey(w, n)
  if redis.call("HGET", sk, "state") ~= "pending" then
    return false
  end
  redis.call("HSET", sk, "state", "done", "rkind", rkind, "result", result, "error", err,
    "completed", rk_fmt(now))
  redis.call("SREM", w .. ":ip", n)
  return true
end
