-- session_probe: is session `sid` of `user` live in this room (after lazy expiry)?
-- Judges a conflicting global owner key. ARGV 5 sid, 6 user.
-- Reply: {ended, "live"|"gone"}
local P = pr_init()
pr_expire(P, nil)
local raw = redis.call("HGET", P.sess, ARGV[5])
if raw and cjson.decode(raw).u == ARGV[6] then return pr_reply(P, "live") end
return pr_reply(P, "gone")
