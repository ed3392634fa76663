-- Rate limiter core (spec rate-limiter.md §4 with the rkit deviations of §4.10).
-- State: one hash per (name, key); fields "<i>:v" / "<i>:ts" per shard i, "c" = creation.
-- A config travels as one ARGV string (fewer arguments = less protocol work):
-- "<kind> <rate> <period> <capacity> <max_reserved|-> <shards> <start|->", kind tb|fw,
-- numbers unsharded. rl_cfg returns the per-shard numbers (spec §4.1).

local function rl_cfg(s)
  local kind, rate, period, cap, maxres, shards, start =
    string.match(s, "^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$")
  shards = tonumber(shards)
  local cfg = {
    fw = kind == "fw",
    period = tonumber(period),
    shards = shards,
    rate = tonumber(rate) / shards,
    cap = tonumber(cap) / shards,
  }
  if maxres ~= "-" then cfg.maxres = tonumber(maxres) / shards end
  if start ~= "-" then cfg.start = tonumber(start) end
  -- state outlives its refill by max(period, 1 s) (spec §7.4)
  cfg.margin = math.max(cfg.period, 1000)
  return cfg
end

-- eval's ARGV[1]: the mode followed by the flags "<reserve><throws>" as 0/1 digits.
-- Returns mode, reserve, throws.
local function rl_op(op)
  return string.sub(op, 1, -3), string.byte(op, -2) == 49, string.byte(op, -1) == 49
end

-- The four random numbers (first shard, second shard, phase 1, phase 2) as one
-- string; "" or absent means all zero (Python sends none when none can matter).
local function rl_rand(s)
  local r = {0, 0, 0, 0}
  if s == nil or s == "" then return r end
  local i = 1
  for w in string.gmatch(s, "%S+") do
    r[i] = tonumber(w)
    i = i + 1
  end
  return r
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

-- spec §4.2: project one shard's state (v, ts; v = nil: never used) to now and
-- consume count; scalars only (the unsharded fast path calls it without tables).
-- fw: fixed window; start: the window phase or nil; rstart: the random phase.
-- Returns value, ts, retry_after|nil.
local function rl_project(fw, rate, period, cap, start, v, ts, now, count, rstart)
  local value = v
  if v == nil then
    value = cap
    if not fw then
      ts = now
    elseif start ~= nil then
      -- DEVIATION Q3: start is a phase; latest start + k*period <= now
      ts = start + math.floor((now - start) / period) * period
    else
      ts = now - math.floor(rstart * period)
    end
  end
  if not fw then
    local per_ms = rate / period
    local elapsed = now - ts
    if elapsed < 0 then elapsed = 0 end -- DEVIATION Q4: clamp, ts never decreases
    value = math.min(value + elapsed * per_ms, cap) - count
    if now > ts then ts = now end
    if value < 0 then
      return value, ts, (-value) / per_ms
    end
    return value, ts, nil
  end
  local windows = math.floor((now - ts) / period)
  if windows < 0 then windows = 0 end
  value = math.min(value + rate * windows, cap) - count
  ts = ts + windows * period
  if value < 0 then
    return value, ts, ts + period * math.ceil(-value / rate) - now
  end
  return value, ts, nil
end

local function rl_calc(st, cfg, now, count, rstart)
  local v, ts
  if st ~= nil then v, ts = st.v, st.ts end
  return rl_project(cfg.fw, cfg.rate, cfg.period, cfg.cap, cfg.start, v, ts, now, count, rstart)
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
local function rl_evaluate(key, cfg, now, count, reserve, rand)
  local r1, r2, rs1, rs2 = rand[1], rand[2], rand[3], rand[4]
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
  local k = key .. "\0" .. d.shard
  local prev = rl_view[k]
  local existed = d.existed
  if prev and prev.dirty and not prev.existed then existed = false end -- staged twice
  rl_view[k] = {v = d.value, ts = d.ts, dirty = true, existed = existed}
end

-- When does one shard become indistinguishable from a fresh bucket? (spec §7.4)
local function rl_full_at(fw, rate, period, cap, v, ts)
  local missing = cap - v
  if missing <= 0 then return ts end
  if fw then
    return ts + period * math.ceil(missing / rate)
  end
  return ts + missing / (rate / period)
end

-- Relative TTL (never PEXPIREAT: a test clock may lie in Redis's past): until the
-- slowest configured shard is full again -- debt extends it -- plus the margin.
-- latest = nil: compute it over every shard in the view.
local function rl_expire(key, cfg, now, latest)
  if latest == nil then
    latest = now
    for i = 0, cfg.shards - 1 do
      local st = rl_get(key, i)
      if st then
        local at = rl_full_at(cfg.fw, cfg.rate, cfg.period, cfg.cap, st.v, st.ts)
        if at > latest then latest = at end
      end
    end
  end
  local ttl = math.ceil(latest - now + cfg.margin)
  if ttl < 1 then ttl = 1 end
  -- a debt repaid in more than ~3,000 years (a huge reservation; inf or nan after
  -- float overflow): keep the key that long, which rk_fmt prints as an integer
  -- PEXPIRE accepts; raising here would leave the HSET already done without a TTL
  if not (ttl <= 1e14) then ttl = 1e14 end
  redis.call("PEXPIRE", key, rk_fmt(ttl))
end

-- Write every staged shard of key, set the creation field and a relative TTL that
-- covers the slowest shard's refill (debt extends it) plus margin.
local function rl_flush(key, cfg, now)
  local args = {}
  local prefix = key .. "\0"
  local created = true
  for k, st in pairs(rl_view) do
    if st and st.dirty and string.sub(k, 1, #prefix) == prefix then
      local shard = string.sub(k, #prefix + 1)
      args[#args + 1] = shard .. ":v"
      args[#args + 1] = rk_fmt(st.v)
      args[#args + 1] = shard .. ":ts"
      args[#args + 1] = rk_fmt(st.ts)
      st.dirty = false
      if st.existed then created = false end
    end
  end
  if #args == 0 then return end
  redis.call("HSET", key, unpack(args))
  if created then
    -- creation time for clear_all (kept if another shard created the hash earlier)
    redis.call("HSETNX", key, "c", rk_fmt(now))
  end
  rl_expire(key, cfg, now, nil)
end

-- Fast path of rl_flush for one script's own decisions (limit/check): write them,
-- the creation time if new, and the TTL.
local function rl_write(key, cfg, now, ds)
  local args = {}
  local new = false
  for _, d in ipairs(ds) do
    args[#args + 1] = d.shard .. ":v"
    args[#args + 1] = rk_fmt(d.value)
    args[#args + 1] = d.shard .. ":ts"
    args[#args + 1] = rk_fmt(d.ts)
    if not d.existed then new = true end
  end
  local latest
  if cfg.shards == 1 then
    if new then
      args[#args + 1] = "c"
      args[#args + 1] = rk_fmt(now)
    end
    redis.call("HSET", key, unpack(args))
    latest = rl_full_at(cfg.fw, cfg.rate, cfg.period, cfg.cap, ds[1].value, ds[1].ts)
  else
    redis.call("HSET", key, unpack(args))
    if new then redis.call("HSETNX", key, "c", rk_fmt(now)) end
    for _, d in ipairs(ds) do rl_stage(key, d) end
  end
  rl_expire(key, cfg, now, latest)
end

local function rl_reply(status, retry, decisions)
  local out = {status, retry and rk_fmt(retry) or ""}
  if decisions == nil then return out end
  for _, d in ipairs(decisions) do
    out[#out + 1] = tostring(d.shard)
    out[#out + 1] = rk_fmt(d.take)
    out[#out + 1] = rk_fmt(d.value)
    out[#out + 1] = rk_fmt(d.ts)
  end
  return out
end

-- limit / check replies (eval.lua, eval_sharded.lua). Before writing: THROW whenever
-- throws and a wait is due, LIMITED when refused, nil to go on (write, then rl_ok).
local function rl_refused(throws, ok, retry, decisions)
  if throws and retry ~= nil then
    return rl_reply("THROW", retry, decisions)
  end
  if not ok then
    return rl_reply("LIMITED", retry, decisions)
  end
  return nil
end

local function rl_ok(retry, decisions)
  if retry == nil and decisions == nil then
    return 1 -- the hot path: ok, no wait (an integer reply is the cheapest to parse)
  end
  return rl_reply("OK", retry, decisions)
end
