-- Rate limiter core (spec rate-limiter.md §4 with the rkit deviations of §4.10).
-- State: one hash per (name, key); fields "<i>:v" / "<i>:ts" per shard i, "c" = creation.
-- Config ARGV block (6 values): kind ("tb"|"fw"), rate, period, capacity,
-- max_reserved|"", shards, start|""  -- 7 values; numbers are unsharded.

local RL_CFG_LEN = 7

local function rl_cfg(argv, i)
  local shards = tonumber(argv[i + 5])
  local cfg = {
    fw = argv[i] == "fw",
    period = tonumber(argv[i + 2]),
    shards = shards,
    start = rk_optnum(argv[i + 6]),
  }
  -- per-shard numbers (spec §4.1)
  cfg.rate = tonumber(argv[i + 1]) / shards
  cfg.cap = tonumber(argv[i + 3]) / shards
  local mr = rk_optnum(argv[i + 4])
  if mr ~= nil then
    mr = mr / shards
  end
  cfg.maxres = mr
  return cfg
end

-- Pending state of the scripts's keys: reads see earlier writes of the same script.
local rl_view = {}

local function rl_get(key, shard)
  local k = key .. "\0" .. shard
  local s = rl_view[k]
  if s == nil then
    local r = redis.call("HMGET", key, shard .. ":v", shard .. ":ts")
    if r[1] then
      s = {v = tonumber(r[1]), ts = tonumber(r[2])}
    else
      s = false
    end
    rl_view[k] = s
  end
  if s == false then
    return nil
  end
  return s
end

-- spec §4.2: project one shard's state to now and consume count.
-- Returns value, ts, retry_after|nil.
local function rl_calc(st, cfg, now, count, rstart)
  local value, ts
  if st == nil then
    value = cfg.cap
    if not cfg.fw then
      ts = now
    elseif cfg.start ~= nil then
      -- DEVIATION Q3: start is a phase; latest start + k*period <= now
      ts = cfg.start + math.floor((now - cfg.start) / cfg.period) * cfg.period
    else
      ts = now - math.floor(rstart * cfg.period)
    end
  else
    value, ts = st.v, st.ts
  end
  if not cfg.fw then
    local per_ms = cfg.rate / cfg.period
    local elapsed = now - ts
    if elapsed < 0 then elapsed = 0 end -- DEVIATION Q4: clamp, ts never decreases
    value = math.min(value + elapsed * per_ms, cfg.cap) - count
    if now > ts then ts = now end
    if value < 0 then
      return value, ts, (-value) / per_ms
    end
    return value, ts, nil
  end
  local windows = math.floor((now - ts) / cfg.period)
  if windows < 0 then windows = 0 end
  value = math.min(value + cfg.rate * windows, cfg.cap) - count
  ts = ts + windows * cfg.period
  if value < 0 then
    return value, ts, ts + cfg.period * math.ceil(-value / cfg.rate) - now
  end
  return value, ts, nil
end

-- spec §4.3: the decision for one shard.
local function rl_decide(key, cfg, shard, now, count, reserve, rstart)
  local st = rl_get(key, shard)
  local value, ts, retry = rl_calc(st, cfg, now, count, rstart)
  local ok = true
  if value < 0 and ((not reserve) or (cfg.maxres ~= nil and -value > cfg.maxres)) then
    ok = false -- DEVIATION Q1: max_reserved = 0 means no debt
  end
  return {ok = ok, value = value, ts = ts, retry = retry, shard = shard,
          existed = st ~= nil, take = count}
end

-- spec §4.5: shard choice with the power of two choices and the combining step.
-- Returns ok, retry|nil, list of decisions to write.
local function rl_evaluate(key, cfg, now, count, reserve, r1, r2, rs1, rs2)
  local n = cfg.shards
  local i = math.floor(r1 * n)
  local a = rl_decide(key, cfg, i, now, count, reserve, rs1)
  if (not a.existed) or n < 3 then
    return a.ok, a.retry, {a}
  end
  local j = (i + 1 + math.floor(r2 * (n - 1))) % n
  local b = rl_decide(key, cfg, j, now, count, reserve, rs2)
  if a.ok and not b.ok then return true, a.retry, {a} end
  if b.ok and not a.ok then return true, b.retry, {b} end
  if a.ok and b.ok then
    if a.value > b.value then return true, a.retry, {a} end
    return true, b.retry, {b}
  end
  local avail_a = a.value + count
  local avail_b = b.value + count
  local target = (avail_a + avail_b - count) / 2
  local a2 = rl_decide(key, cfg, i, now, avail_a - target, reserve, rs1)
  local b2 = rl_decide(key, cfg, j, now, avail_b - target, reserve, rs2)
  local retry = nil
  if a2.retry ~= nil or b2.retry ~= nil then
    retry = math.max(a2.retry or 0, b2.retry or 0)
  end
  return a2.ok and b2.ok, retry, {a2, b2}
end

-- Stage a decision's new state in the view (written by rl_flush).
local function rl_stage(key, d)
  rl_view[key .. "\0" .. d.shard] = {v = d.value, ts = d.ts, dirty = true}
end

-- When does one shard become indistinguishable from a fresh bucket? (spec §7.4)
local function rl_full_at(cfg, v, ts)
  local missing = cfg.cap - v
  if missing <= 0 then return ts end
  if cfg.fw then
    return ts + cfg.period * math.ceil(missing / cfg.rate)
  end
  return ts + missing / (cfg.rate / cfg.period)
end

-- Write every staged shard of key, set the creation field and a relative TTL that
-- covers the slowest shard's refill (debt extends it) plus margin.
local function rl_flush(key, cfg, now, margin)
  local args = {}
  local prefix = key .. "\0"
  for k, s in pairs(rl_view) do
    if s and s.dirty and string.sub(k, 1, #prefix) == prefix then
      local shard = string.sub(k, #prefix + 1)
      args[#args + 1] = shard .. ":v"
      args[#args + 1] = rk_fmt(s.v)
      args[#args + 1] = shard .. ":ts"
      args[#args + 1] = rk_fmt(s.ts)
      s.dirty = false
    end
  end
  if #args == 0 then return end
  redis.call("HSET", key, unpack(args))
  redis.call("HSETNX", key, "c", rk_fmt(now))
  local latest = now
  if redis.call("HLEN", key) <= 3 and cfg.shards == 1 then
    local st = rl_get(key, "0")
    if st then latest = math.max(latest, rl_full_at(cfg, st.v, st.ts)) end
  else
    local all = redis.call("HGETALL", key)
    for x = 1, #all, 2 do
      local f = all[x]
      if string.sub(f, -2) == ":v" then
        local st = rl_get(key, string.sub(f, 1, -3))
        if st then
          local at = rl_full_at(cfg, st.v, st.ts)
          if at > latest then latest = at end
        end
      end
    end
  end
  local ttl = math.ceil(latest - now + margin)
  if ttl < 1 then ttl = 1 end
  redis.call("PEXPIRE", key, ttl)
end

local function rl_reply(status, retry, decisions)
  local out = {status, retry and rk_fmt(retry) or ""}
  for _, d in ipairs(decisions) do
    out[#out + 1] = tostring(d.shard)
    out[#out + 1] = rk_fmt(d.take)
    out[#out + 1] = rk_fmt(d.value)
    out[#out + 1] = rk_fmt(d.ts)
  end
  return out
end
