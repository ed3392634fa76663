-- remove_room, one batch: drop up to `batch` sessions and `batch` users; when none
-- are left, delete the room's keys (the event stream stays until its TTL).
-- ARGV 5 batch. Reply: {ended, earliest deadline|"", {removed users}, "more"|"done",
-- existed "1"|"0"}
local P = pr_init()
local batch = tonumber(ARGV[5])
local existed = redis.call("EXISTS", P.room, P.users, P.sess) > 0 and "1" or "0"
for _, sid in ipairs(redis.call("ZRANGE", P.dl, 0, batch - 1)) do
  pr_drop_session(P, sid)
end
local removed = {}
for _, zkey in ipairs({P.on, P.off}) do
  for _, m in ipairs(redis.call("ZRANGE", zkey, 0, batch - 1)) do
    local user = m
    if zkey == P.off then user = string.sub(m, 18) end
    redis.call("HDEL", P.users, user)
    redis.call("ZREM", zkey, m)
    removed[#removed + 1] = user
    pr_event(P, "remove", user, P.now)
  end
end
if redis.call("EXISTS", P.dl, P.on, P.off) > 0 then
  return pr_reply_dl(P, removed, "more", existed)
end
redis.call("DEL", P.room, P.users, P.sess, P.tok)
return pr_reply_dl(P, removed, "done", existed)
