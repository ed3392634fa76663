-- room_stats (admin): counts after lazy expiry. Reply: {ended, online, users, sessions}
local P = pr_init()
pr_expire(P, nil)
return pr_reply(P, redis.call("ZCARD", P.on), redis.call("HLEN", P.users),
  redis.call("HLEN", P.sess))
