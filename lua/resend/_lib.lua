-- Resend helpers (spec resend.md §7). Every script gets KEYS[1] = D, the stem of the
-- instance's keys ("rkit:{<ns>:resend:<instance>}:m"); all keys below share its hash
-- tag (one Cluster slot):
--   D:seq STRING   D:e:<id> HASH (email)   D:waiting ZSET id -> seq
--   D:created ZSET id -> created_ms   D:fin ZSET id -> finalized_ms
--   D:st:<status> ZSET id -> created_ms (emails by status)   D:rid HASH resend id -> id
--   D:ev:<id> LIST delivery events   D:b:<batch> HASH   D:batches ZSET batch -> last change
--   D:sched STRING   D:wh:<svix id> STRING   D:orphan:<resend id> LIST   D:idem:<key> STRING
--   D:orphans ZSET resend id with parked events -> when they expire (App clock)
--   D:scheduled ZSET id -> due ms (emails sent later; they join D:waiting when due)
-- ARGV[1] is always now ("" = Redis TIME).

local RS_RANK = {waiting = 0, queued = 1, sent = 2, delivery_delayed = 3, delivered = 4,
  bounced = 5, failed = 5, cancelled = 100}
local RS_MAX_EVENTS = 1000
local RS_SCHED_GRACE = 60000

-- Claim the batcher run: the marker holds the due time of the scheduled run; one
-- that is `RS_SCHED_GRACE` overdue on the App's clock counts as lost (its process
-- died between the script and the job enqueue). Returns true when claimed.
local function rs_claim_sched(D, now, delay)
  local sk = D .. ":sched"
  local due = redis.call("GET", sk)
  if due and tonumber(due) + RS_SCHED_GRACE >= now then
    return false
  end
  redis.call("SET", sk, rk_fmt(now + delay), "PX", math.floor(delay + RS_SCHED_GRACE))
  return true
end

local function rs_set_status(D, id, old, new)
  local ek = D .. ":e:" .. id
  local created = redis.call("HGET", ek, "created_ms") or "0"
  if old then
    redis.call("ZREM", D .. ":st:" .. old, id)
  end
  redis.call("ZADD", D .. ":st:" .. new, created, id)
  redis.call("HSET", ek, "status", new)
end

local function rs_finalize(D, id, now)
  redis.call("HSET", D .. ":e:" .. id, "finalized_ms", rk_fmt(now))
  redis.call("ZADD", D .. ":fin", rk_fmt(now), id)
end

-- §4.7 update rules for one event of a known email; appends the delivery event.
local function rs_apply(D, id, etype, created_at, rid, msg, now)
  local ek = D .. ":e:" .. id
  local f = redis.call("HMGET", ek, "status", "finalized_ms", "bounced", "failed",
    "delivery_delayed", "complained", "opened", "clicked")
  local st = f[1]
  if not st then
    return false
  end
  local function can(x)
    return st ~= "cancelled" and RS_RANK[x] > (RS_RANK[st] or 0)
  end
  if etype == "email.delivered" then
    if can("delivered") then
      rs_set_status(D, id, st, "delivered")
      rs_finalize(D, id, now)
    end
  elseif etype == "email.delivery_delayed" then
    local c = can("delivery_delayed")
    if c or f[5] ~= "1" then
      redis.call("HSET", ek, "delivery_delayed", "1")
      if c then
        rs_set_status(D, id, st, "delivery_delayed")
      end
    end
  elseif etype == "email.bounced" then
    local c = can("bounced")
    if c or f[3] ~= "1" then
      redis.call("HSET", ek, "bounced", "1")
      if msg ~= "" then
        redis.call("HSET", ek, "error_message", msg)
      end
      if c then
        rs_set_status(D, id, st, "bounced")
        rs_finalize(D, id, now)
      end
    end
  elseif etype == "email.failed" then
    local c = can("failed")
    if c or f[4] ~= "1" then
      redis.call("HSET", ek, "failed", "1")
      if c then
        rs_set_status(D, id, st, "failed")
        rs_finalize(D, id, now)
      end
    end
  elseif etype == "email.complained" then
    if f[6] ~= "1" then
      redis.call("HSET", ek, "complained", "1")
      if not f[2] then
        rs_finalize(D, id, now)
      end
    end
  elseif etype == "email.opened" then
    if f[7] ~= "1" then
      redis.call("HSET", ek, "opened", "1")
    end
  elseif etype == "email.clicked" then
    if f[8] ~= "1" then
      redis.call("HSET", ek, "clicked", "1")
    end
  end
  local ev = {event_type = etype, created_at = created_at, resend_id = rid}
  if msg ~= "" then
    ev.message = msg
  end
  local evk = D .. ":ev:" .. id
  redis.call("RPUSH", evk, cjson.encode(ev))
  redis.call("LTRIM", evk, -RS_MAX_EVENTS, -1)
  return true
end

-- Whether events may be parked under some resend id (R2), on the App's clock: a
-- per-batch guard that spares a batch result one lookup per email. D:orphans holds
-- each parked resend id until its events expire (the list's own PX bounds them too).
local function rs_orphans_pending(D, now)
  local z = D .. ":orphans"
  if redis.call("ZCARD", z) == 0 then
    return false
  end
  redis.call("ZREMRANGEBYSCORE", z, "-inf", "(" .. rk_fmt(now))
  return redis.call("ZCARD", z) > 0
end

-- Apply the events parked under resend id `rid`, now known to be email `id`;
-- appends {id, event json} pairs to `out` for the callbacks.
local function rs_take_parked(D, id, rid, now, out)
  local ok = D .. ":orphan:" .. rid
  local parked = redis.call("LRANGE", ok, 0, -1)
  if #parked > 0 then
    redis.call("DEL", ok)
    redis.call("ZREM", D .. ":orphans", rid)
    for _, raw in ipairs(parked) do
      local p = cjson.decode(raw)
      -- parked events live orphan_ttl_ms on the App's clock (PX bounds the memory)
      if p.x >= now and rs_apply(D, id, p.t, p.c, rid, p.m, now) then
        out[#out + 1] = id
        out[#out + 1] = p.e
      end
    end
  end
end

-- Record resend id `rid` for email `id` and apply the events parked under it.
local function rs_record_rid(D, id, rid, now, out)
  redis.call("HSET", D .. ":rid", rid, id)
  if rs_orphans_pending(D, now) then
    rs_take_parked(D, id, rid, now, out)
  end
end

-- Delete one email completely (record, events, indexes, resend-id mapping, idem key).
local function rs_delete(D, id)
  local ek = D .. ":e:" .. id
  local f = redis.call("HMGET", ek, "status", "resend_id", "idem")
  if f[1] then
    redis.call("ZREM", D .. ":st:" .. f[1], id)
  end
  if f[2] and redis.call("HGET", D .. ":rid", f[2]) == id then
    redis.call("HDEL", D .. ":rid", f[2])
  end
  if f[3] and redis.call("GET", D .. ":idem:" .. f[3]) == id then
    redis.call("DEL", D .. ":idem:" .. f[3])
  end
  redis.call("DEL", ek, D .. ":ev:" .. id)
  redis.call("ZREM", D .. ":waiting", id)
  redis.call("ZREM", D .. ":scheduled", id)
  redis.call("ZREM", D .. ":created", id)
  redis.call("ZREM", D .. ":fin", id)
end
