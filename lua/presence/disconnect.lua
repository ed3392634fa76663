-- disconnect (§4.2): graceful end of the session holding this token.
-- ARGV 5 session secret. Reply: {ended, earliest} (unknown token) | {ended, earliest,
-- "orphan"} (token without its session: deleted) | {ended, earliest, user, sid,
-- went_offline "0"/"1"}; earliest = the room's earliest deadline, "" for none.
local P = pr_init()
pr_expire(P, nil)
local secret = ARGV[5]
local sid = redis.call("HGET", P.tok, secret)
if not sid then return pr_reply_dl(P) end
local raw = redis.call("HGET", P.sess, sid)
if not raw or cjson.decode(raw).t ~= secret then
  redis.call("HDEL", P.tok, secret)
  return pr_reply_dl(P, "orphan")
end
local user = cjson.decode(raw).u
local off = pr_end_session(P, sid, P.now)
return pr_reply_dl(P, user, sid, off and "1" or "0")
