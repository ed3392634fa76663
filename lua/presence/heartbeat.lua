-- heartbeat (§4.1): create or refresh a session, make its user online, mint tokens.
-- KEYS: the room keys. ARGV 5 user, 6 sid, 7 timeout ms (multiplier x interval),
-- 8 mode ("bump": only refresh an existing session; "create"), 9 new room secret,
-- 10 new session secret (both "" in bump mode: an existing session implies a room
-- token).
-- Reply: {ended, "claim"} (bump mode, no such session) |
--        {ended, "conflict", owner user, owner secret} |
--        {ended, "ok", room secret, session secret, new_session, went_online,
--         earliest deadline, shortened}
local P = pr_init()
pr_expire(P, nil)
local user, sid = ARGV[5], ARGV[6]
local deadline = P.now + tonumber(ARGV[7])
local raw = redis.call("HGET", P.sess, sid)
local new_session, shortened, secret = "0", "0", nil
if raw then
  local s = cjson.decode(raw)
  if s.u ~= user then return pr_reply(P, "conflict", s.u, s.t) end
  if deadline < tonumber(redis.call("ZSCORE", P.dl, sid)) then shortened = "1" end
  secret = s.t
elseif ARGV[8] == "bump" then
  return pr_reply(P, "claim")
else
  secret = ARGV[10]
  redis.call("HSET", P.sess, sid, cjson.encode({u = user, t = secret}))
  redis.call("HSET", P.tok, secret, sid)
  new_session = "1"
end
redis.call("ZADD", P.dl, rk_fmt(deadline), sid)

local rec = pr_get(P, user)
local went_online = "0"
if not rec then
  rec = {on = 0, ld = "0", seq = redis.call("HINCRBY", P.room, "seq", 1), n = 0}
end
if rec.on ~= 1 then
  pr_set_online(P, user, rec)
  went_online = "1"
end
if new_session == "1" then rec.n = rec.n + 1 end
if new_session == "1" or went_online == "1" then pr_put(P, user, rec) end
if went_online == "1" then pr_event(P, "join", user, P.now) end

local room_secret = redis.call("HGET", P.room, "token")
if not room_secret and ARGV[9] == "" then return pr_reply(P, "claim") end
if not room_secret then
  room_secret = ARGV[9]
  redis.call("HSET", P.room, "token", room_secret)
end
return pr_reply(P, "ok", room_secret, secret, new_session, went_online, pr_earliest(P), shortened)
