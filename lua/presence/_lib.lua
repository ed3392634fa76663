-- Presence helpers (spec presence.md §7). Room scripts share this KEYS layout:
--   1 room HASH (token, seq)    2 users HASH user -> JSON {on, ld, seq, n, d}
--   3 on ZSET user -> seq       4 off ZSET "<seq %016d>|user" -> ld
--   5 sess HASH sid -> JSON {u, t}   6 dl ZSET sid -> deadline
--   7 tok HASH secret -> sid    8 events STREAM
-- and this ARGV head: 1 now|"", 2 events MAXLEN (0 = no events), 3 events TTL ms,
-- 4 lazy expiry "1"/"0"; operation arguments start at ARGV[5].
-- Numbers in records and replies are %.17g strings (ld) or small integers.

local function pr_init()
  return {
    room = KEYS[1], users = KEYS[2], on = KEYS[3], off = KEYS[4],
    sess = KEYS[5], dl = KEYS[6], tok = KEYS[7], ev = KEYS[8],
    now = rk_now(ARGV[1]), evmax = tonumber(ARGV[2]) or 0, evttl = tonumber(ARGV[3]) or 0,
    lazy = ARGV[4] ~= "0",
    ended = {}, offline = 0,
  }
end

local function pr_offkey(seq, user)
  return string.format("%016d", seq) .. "|" .. user
end

local function pr_get(P, user)
  local raw = redis.call("HGET", P.users, user)
  if raw then return cjson.decode(raw) end
  return nil
end

local function pr_put(P, user, rec)
  redis.call("HSET", P.users, user, cjson.encode(rec))
end

-- One stream entry per transition, in the same script as the transition.
local function pr_event(P, kind, user, at)
  if P.evmax > 0 then
    redis.call("XADD", P.ev, "MAXLEN", "~", P.evmax, "*", "type", kind, "user", user,
      "at", rk_fmt(at))
    if P.evttl > 0 then redis.call("PEXPIRE", P.ev, math.ceil(P.evttl)) end
  end
end

local function pr_set_online(P, user, rec)
  redis.call("ZREM", P.off, pr_offkey(rec.seq, user))
  redis.call("ZADD", P.on, rec.seq, user)
  rec.on = 1
  rec.ld = "0"
end

local function pr_set_offline(P, user, rec, at)
  redis.call("ZREM", P.on, user)
  redis.call("ZADD", P.off, rk_fmt(at), pr_offkey(rec.seq, user))
  rec.on = 0
  rec.ld = rk_fmt(at)
end

-- Delete a session's rows; remember (sid, user, secret) so the caller can release
-- the global owner key. Returns the session record or nil.
local function pr_drop_session(P, sid)
  local raw = redis.call("HGET", P.sess, sid)
  redis.call("ZREM", P.dl, sid)
  if not raw then return nil end
  local s = cjson.decode(raw)
  redis.call("HDEL", P.sess, sid)
  redis.call("HDEL", P.tok, s.t)
  local e = P.ended
  e[#e + 1] = sid
  e[#e + 1] = s.u
  e[#e + 1] = s.t
  return s
end

-- §4.2 session end: the user goes offline at `at` when it was their last session.
local function pr_end_session(P, sid, at)
  local s = pr_drop_session(P, sid)
  if not s then return false end
  local rec = pr_get(P, s.u)
  if not rec then return false end
  rec.n = rec.n - 1
  local went_offline = false
  if rec.n <= 0 then
    rec.n = 0
    if rec.on == 1 then
      pr_set_offline(P, s.u, rec, at)
      pr_event(P, "leave", s.u, at)
      P.offline = P.offline + 1
      went_offline = true
    end
  end
  pr_put(P, s.u, rec)
  return went_offline
end

-- Lazy expiry: end sessions with deadline <= now in deadline order (at most `max`;
-- the sweeper passes `max` and always expires, room operations only when lazy).
-- DEVIATION (§7.4): lastDisconnected is the deadline of the session that ended.
-- Returns how many due sessions were looked at.
local function pr_expire(P, max)
  if not P.lazy and not max then return 0 end
  local due
  if max then
    due = redis.call("ZRANGEBYSCORE", P.dl, "-inf", rk_fmt(P.now), "WITHSCORES", "LIMIT", 0, max)
  else
    due = redis.call("ZRANGEBYSCORE", P.dl, "-inf", rk_fmt(P.now), "WITHSCORES")
  end
  for i = 1, #due, 2 do
    pr_end_session(P, due[i], tonumber(due[i + 1]))
  end
  return #due / 2
end

-- The room's earliest session deadline as a string, or "" without sessions.
local function pr_earliest(P)
  local first = redis.call("ZRANGE", P.dl, 0, 0, "WITHSCORES")
  if first[2] then return first[2] end
  return ""
end

-- Every room script replies {ended sessions (sid, user, secret)*, ...}.
local function pr_reply(P, ...)
  return {P.ended, ...}
end

-- The same with the room's earliest session deadline ("" = no session left) second:
-- for operations that may end the room's last session (the caller then drops the
-- room from the sweeper's due index).
local function pr_reply_dl(P, ...)
  return {P.ended, pr_earliest(P), ...}
end
