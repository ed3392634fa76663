-- remove_room_user: delete the user's record and all their sessions in the room.
-- ARGV 5 user. Reply: {ended, earliest deadline|"", "1"|"0"} (ended lists the removed
-- sessions too)
local P = pr_init()
pr_expire(P, nil)
local user = ARGV[5]
local rec = pr_get(P, user)
if not rec then return pr_reply_dl(P, "0") end
if rec.n > 0 then
  local all = redis.call("HGETALL", P.sess)
  for i = 1, #all, 2 do
    if cjson.decode(all[i + 1]).u == user then pr_drop_session(P, all[i]) end
  end
end
redis.call("HDEL", P.users, user)
redis.call("ZREM", P.on, user)
redis.call("ZREM", P.off, pr_offkey(rec.seq, user))
pr_event(P, "remove", user, P.now)
return pr_reply_dl(P, "1")
