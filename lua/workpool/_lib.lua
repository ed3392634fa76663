-- workpool shared Lua (prepended to every workpool script). Lua 5.1 + cjson only.
-- KEYS[1..10] are always the pool keys below; work hashes "<base>:w:<id>" share
-- the pool's hash tag, so they live in the same Cluster slot.
-- ARGV[1] = now ("" = Redis TIME), ARGV[2] = pool options JSON (see rkit/workpool.py).
local K_CFG, K_SEQ, K_PENDING, K_RUNNING, K_LIVE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local K_OUTBOX, K_DLQ, K_STATS, K_EVENTS, K_DONE = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local BASE = string.sub(K_CFG, 1, -5)
local NOW = rk_now(ARGV[1])
local O = cjson.decode(ARGV[2])
local EV = {}
local LEVELS = {DEBUG = 0, TRACE = 1, INFO = 2, REPORT = 3, WARN = 4, ERROR = 5}
local YEAR = 365 * 24 * 3600 * 1000

local function wkey(id)
  return BASE .. ":w:" .. id
end

local _level = nil
local function wp_level()
  if _level == nil then
    local l = redis.call("HGET", K_CFG, "log_level")
    _level = LEVELS[l or O.default_log_level] or 3
  end
  return _level
end

-- a structured event: written to the capped stream and returned to Python (which
-- logs it) when the pool's log level lets it through -- or, in pools with per-item
-- levels (the retrier's per-run log_level), the level stored on the item
local function emit(level, event, fields)
  local min = wp_level()
  if O.item_levels and fields.work_id then
    local l = redis.call("HGET", wkey(fields.work_id), "log_level")
    if l and LEVELS[l] then
      min = LEVELS[l]
    end
  end
  if LEVELS[level] < min then
    return
  end
  fields.component = O.component
  fields.pool = O.pool
  fields.event = event
  fields.level = level
  local line = cjson.encode(fields)
  redis.call("XADD", K_EVENTS, "MAXLEN", "~", 10000, "*", "e", line)
  EV[#EV + 1] = line
end

-- at most n bytes of s, cut at a UTF-8 character boundary (event fields stay valid
-- UTF-8 however long an error message is)
local function clip(s, n)
  if #s <= n then
    return s
  end
  local i = n
  while i > 0 and string.byte(s, i + 1) >= 128 and string.byte(s, i + 1) < 192 do
    i = i - 1
  end
  return string.sub(s, 1, i) .. "..."
end

local function count(name)
  redis.call("HINCRBY", K_STATS, name, 1)
  redis.call("HINCRBY", K_STATS, "r_" .. name, 1)
end

local function ms(x)
  return math.floor(x + 0.5)
end

local function max_parallelism()
  local m = redis.call("HGET", K_CFG, "max_parallelism")
  if m then
    return tonumber(m)
  end
  return O.default_max_parallelism
end

-- validation of a config write ("" = not given); the message, or nil when valid
local function config_error(maxp, level)
  if maxp ~= "" then
    local m = tonumber(maxp)
    if m == nil or m ~= math.floor(m) or m < 0 then
      return "max_parallelism must be >= 0"
    end
    if m > O.parallelism_limit then
      return "max_parallelism must be <= " .. O.parallelism_limit
    end
  end
  if level ~= "" and LEVELS[level] == nil then
    return "log_level must be one of DEBUG, TRACE, INFO, REPORT, WARN, ERROR"
  end
  return nil
end

-- 1 once a script has (re)created the pool's config record: the client then lists
-- the pool in the namespace's pool index (another Cluster slot: a second command)
local CREATED = 0

-- store validated config ("" = keep) and mark the pool as created
local function write_config(maxp, level)
  if maxp ~= "" then
    redis.call("HSET", K_CFG, "max_parallelism", maxp)
  end
  if level ~= "" then
    redis.call("HSET", K_CFG, "log_level", level)
    _level = nil
  end
  if redis.call("HSETNX", K_CFG, "created_at", rk_fmt(NOW)) == 1 then
    CREATED = 1
  end
end

-- cancel's config write (spec §3.1: only a class-level log level, "" = none);
-- returns the validation error, or nil once written
local function write_log_level(level)
  local bad = config_error("", level)
  if bad == nil and level ~= "" then
    write_config("", level)
  end
  return bad
end

-- run_at bounds (spec §3.2): more than a year in the past -> now; more than four
-- years ahead -> now + 1 year; never before now
local function bound_due(due, id)
  if due < NOW - YEAR then
    emit("WARN", "run_at_bounded", {work_id = id, run_at = ms(due), now = ms(NOW)})
    return NOW
  end
  if due > NOW + 4 * YEAR then
    emit("WARN", "run_at_bounded", {work_id = id, run_at = ms(due), now = ms(NOW)})
    return NOW + YEAR
  end
  if due < NOW then
    return NOW
  end
  return due
end

local function add_pending(id, wk, due)
  local seq = redis.call("INCR", K_SEQ)
  local member = string.format("%016d", seq) .. ":" .. id
  redis.call("HSET", wk, "state", "pending", "due", rk_fmt(due), "pmember", member)
  redis.call("HDEL", wk, "worker", "lease_until")
  redis.call("ZADD", K_PENDING, rk_fmt(due), member)
end

-- claim up to `limit` due items into free slots (slot = member of `running`).
-- With `chain`, the first claimed item is marked "1": the worker that asked begins
-- it itself, without an arq job. Entries: {id, attempts, token, chained}.
local function dispatch(limit, chain)
  local free = max_parallelism() - redis.call("ZCARD", K_RUNNING)
  local out = {}
  if free <= 0 or limit <= 0 then
    return out
  end
  if free < limit then
    limit = free
  end
  local due = redis.call("ZRANGEBYSCORE", K_PENDING, "-inf", rk_fmt(NOW), "LIMIT", 0, limit)
  for _, m in ipairs(due) do
    redis.call("ZREM", K_PENDING, m)
    local id = string.sub(m, 18)
    local wk = wkey(id)
    local st = redis.call("HMGET", wk, "state", "attempts", "due", "label", "enqueued_at")
    if st[1] == "pending" then
      local token = redis.call("HINCRBY", wk, "token", 1)
      -- dispatched, not running: the attempt's body starts only after begin.lua
      -- (fenced), so a cancel that lands before it always wins. A chained item goes to
      -- the completing worker directly (no arq job); if that worker dies before begin, the
      -- dispatch lease runs out and the pump finds no job and enqueues one
      local lease = NOW + O.dispatch_lease_ms
      redis.call("HSET", wk, "state", "dispatched", "lease_until", rk_fmt(lease))
      local entry = {id, st[2], tostring(token), "0"}
      if chain and #out == 0 then
        entry[4] = "1"
      end
      redis.call("ZADD", K_RUNNING, rk_fmt(lease), id)
      redis.call("HINCRBY", K_STATS, "started", 1)
      emit("INFO", "started", {work_id = id, fn_name = st[4], enqueued_at = ms(tonumber(st[5])),
        started_at = ms(NOW), start_lag = ms(NOW - tonumber(st[3])), attempt = tonumber(st[2])})
      out[#out + 1] = entry
    end
  end
  return out
end

-- finished work leaves the pool: deleted, or kept for keep_result_ms (logically
-- until expires_at, physically by a relative PEXPIRE plus the `done` index sweep)
local function retire(id, wk)
  if O.keep_result_ms > 0 then
    local until_ = NOW + O.keep_result_ms
    redis.call("HSET", wk, "expires_at", rk_fmt(until_))
    redis.call("PEXPIRE", wk, math.ceil(O.keep_result_ms + 60000))
    redis.call("ZADD", K_DONE, rk_fmt(until_), id)
  else
    redis.call("DEL", wk)
  end
end

-- a callback out of budget: the id moves to the dead-letter list (bounded memory:
-- a dead letter and its work item are kept max(keep_result_ms, dlq_retention_ms),
-- physically by PEXPIRE, logically by the hourly sweep; beyond dlq_max_len entries
-- the oldest are dropped at once)
local function dead_letter(id, wk)
  redis.call("ZREM", K_OUTBOX, id)
  redis.call("ZADD", K_DLQ, rk_fmt(NOW), id)
  local keep = math.max(O.keep_result_ms, O.dlq_retention_ms)
  if O.keep_result_ms > 0 then
    redis.call("HSET", wk, "expires_at", rk_fmt(NOW + keep))
    redis.call("ZADD", K_DONE, rk_fmt(NOW + keep), id)
  end
  redis.call("PEXPIRE", wk, math.ceil(keep + 60000))
  local excess = redis.call("ZCARD", K_DLQ) - O.dlq_max_len
  local dropped = {}
  if excess > 0 then
    dropped = redis.call("ZRANGE", K_DLQ, 0, excess - 1)
  end
  return dropped
end

-- a dead letter leaves the list for good (trimmed, or past dlq_retention_ms): its
-- work item goes too (a pool keeping results lets it expire on its own schedule).
-- Returns 1 when the work item was deleted
local function drop_dead(id)
  redis.call("ZREM", K_DLQ, id)
  local wk = wkey(id)
  if O.keep_result_ms <= 0 and redis.call("HGET", wk, "state") == "finished"
    and redis.call("ZSCORE", K_OUTBOX, id) == false then
    return redis.call("DEL", wk)
  end
  return 0
end

-- dead-letter a callback whose budget is spent after `n` attempts: counted, logged
-- (ERROR) and the list trimmed to dlq_max_len
local function dead_letter_callback(id, wk, err, n)
  redis.call("HSET", wk, "oc_error", err)
  local dropped = dead_letter(id, wk)
  redis.call("HINCRBY", K_STATS, "oc_dead", 1)
  emit("ERROR", "dead_lettered", {work_id = id, error = err, oc_attempts = n})
  for _, old in ipairs(dropped) do
    emit("WARN", "dead_letter_dropped", {work_id = old, reason = "dlq_max_len"})
    drop_dead(old)
    redis.call("HINCRBY", K_STATS, "dlq_dropped", 1)
  end
end

-- the terminal transition and the callback obligation, atomically. `fast`: the
-- caller delivers the callback itself right away (outbox entry hidden for a lease).
-- Returns {"DONE", on_complete, context, kind} or {"DONE"}.
local ATTEMPT_MS = nil -- the ending attempt's run time (set by finish_attempt), for events
local function finalize(id, wk, kind, payload, fast)
  redis.call("HSET", wk, "state", "finished", "result_kind", kind, "finished_at", rk_fmt(NOW))
  redis.call("HDEL", wk, "lease_until", "worker")
  local oc = redis.call("HGET", wk, "on_complete")
  local keep = O.keep_result_ms > 0 or (oc and oc ~= "")
  if kind == "success" then
    if keep then
      redis.call("HSET", wk, "result", payload)
    end
    count("succeeded")
  elseif kind == "failed" then
    redis.call("HSET", wk, "error", payload)
    count("failed")
  else
    count("canceled")
  end
  count("completed")
  redis.call("ZREM", K_LIVE, id)
  local ev = {work_id = id, fn_name = redis.call("HGET", wk, "label"), completed_at = ms(NOW),
    attempts = tonumber(redis.call("HGET", wk, "attempts")), status = kind,
    duration_ms = ATTEMPT_MS}
  if kind == "failed" then
    ev.error = clip(payload, 2000)
    emit("ERROR", "completed", ev) -- a final failure
  else
    emit("INFO", "completed", ev)
  end
  ATTEMPT_MS = nil
  if oc and oc ~= "" then
    if fast then
      redis.call("ZADD", K_OUTBOX, rk_fmt(NOW + O.oc_lease_ms), id)
      redis.call("HSET", wk, "oc_attempts", 1)
      return {"DONE", oc, redis.call("HGET", wk, "context") or "", kind}
    end
    redis.call("ZADD", K_OUTBOX, rk_fmt(NOW), id)
    redis.call("HSET", wk, "oc_attempts", 0)
    return {"DONE"}
  end
  retire(id, wk)
  return {"DONE"}
end

-- one attempt has ended (reported, or declared lost): count it, free its slot, and
-- either schedule a retry (backing-off work holds no slot) or finish. A failure's
-- traceback (tb, bounded by the caller; "" = none) is kept as the item's last one.
local function finish_attempt(id, wk, kind, payload, non_retryable, rand, fast, tb)
  local attempts = redis.call("HINCRBY", wk, "attempts", 1)
  local began = tonumber(redis.call("HGET", wk, "started_at") or "")
  ATTEMPT_MS = nil
  if began and redis.call("HGET", wk, "state") == "running" then
    ATTEMPT_MS = ms(NOW - began)
  end
  redis.call("ZREM", K_RUNNING, id)
  redis.call("HSET", wk, "token_done", redis.call("HGET", wk, "token"))
  local retry = nil
  local raw = redis.call("HGET", wk, "retry")
  if raw and raw ~= "" then
    retry = cjson.decode(raw)
  end
  if kind == "failed" then
    redis.call("HSET", wk, "last_error", payload)
    if tb ~= "" then
      redis.call("HSET", wk, "traceback", tb)
    else
      redis.call("HDEL", wk, "traceback") -- it belonged to an earlier error
    end
  end
  local retryable = kind == "failed" and non_retryable ~= "1" and retry ~= nil
    and retry.max_attempts > 0 and attempts < retry.max_attempts
  if retryable and redis.call("HGET", wk, "canceled") == "1" then
    return finalize(id, wk, "canceled", "", fast)
  end
  if retryable then
    local delay = retry.initial_backoff_ms * retry.base ^ (attempts - 1 + (retry.offset or 0))
    if retry.max_backoff_ms and delay > retry.max_backoff_ms then
      delay = retry.max_backoff_ms
    end
    local due = bound_due(NOW + delay * (0.5 + rand), id)
    add_pending(id, wk, due)
    count("retries")
    count("completed")
    emit("WARN", "completed", {work_id = id, fn_name = redis.call("HGET", wk, "label"),
      completed_at = ms(NOW), attempts = attempts, status = "retrying", retry_at = ms(due),
      error = clip(payload, 2000), duration_ms = ATTEMPT_MS})
    ATTEMPT_MS = nil
    return {"RETRY", rk_fmt(due), rk_fmt(due - NOW)}
  end
  return finalize(id, wk, kind, payload, fast)
end

local function fenced(wk, token)
  local st = redis.call("HMGET", wk, "state", "token")
  return st[1] ~= false and st[2] == token, st[1]
end

-- cancel one item. mode "flag": running work keeps going but gets no further
-- attempts; "finish": running work is finished as canceled at once (its later
-- report is stale). Returns "CANCELED" | "FLAGGED" | "NOOP" | "NOT_FOUND" (no
-- record: never enqueued, past its retention, or lost).
local function cancel_one(id, mode)
  local wk = wkey(id)
  local st = redis.call("HMGET", wk, "state", "canceled", "pmember", "expires_at")
  if not st[1] or (st[4] and tonumber(st[4]) <= NOW) then
    return "NOT_FOUND"
  end
  if st[1] == "pending" then
    redis.call("ZREM", K_PENDING, st[3])
    finalize(id, wk, "canceled", "", false)
    return "CANCELED"
  elseif st[1] == "dispatched" then
    -- not begun (queued for a worker, or handed back): it never starts; begin.lua
    -- answers STALE to its job
    redis.call("ZREM", K_RUNNING, id)
    finalize(id, wk, "canceled", "", false)
    return "CANCELED"
  elseif st[1] == "running" then
    if mode == "finish" then
      redis.call("ZREM", K_RUNNING, id)
      finalize(id, wk, "canceled", "", false)
      return "CANCELED"
    elseif st[2] ~= "1" then
      redis.call("HSET", wk, "canceled", 1)
      return "FLAGGED"
    end
  end
  return "NOOP"
end
