-- sweep, one room: end up to `max` overdue sessions; with a retention, delete
-- offline users whose lastDisconnected <= now - retention (and the room's keys
-- when nothing is left). ARGV 5 max, 6 retention ms|"".
-- Reply: {ended, users offline, next due|"" , "more"|"done", {removed users}}
local P = pr_init()
local max = tonumber(ARGV[5])
local looked = pr_expire(P, max)
local retention = rk_optnum(ARGV[6])
local removed = {}
local next_due = pr_earliest(P)
if retention then
  local bound = rk_fmt(P.now - retention)
  for _, m in ipairs(redis.call("ZRANGEBYSCORE", P.off, "-inf", bound, "LIMIT", 0, max)) do
    local user = string.sub(m, 18)
    redis.call("HDEL", P.users, user)
    redis.call("ZREM", P.off, m)
    removed[#removed + 1] = user
    pr_event(P, "remove", user, P.now)
  end
  if #removed > 0 and redis.call("EXISTS", P.users, P.sess) == 0 then
    redis.call("DEL", P.room, P.on, P.off, P.dl, P.tok)
  end
  local oldest = redis.call("ZRANGE", P.off, 0, 0, "WITHSCORES")
  if oldest[2] then
    local t = tonumber(oldest[2]) + retention
    if next_due == "" or t < tonumber(next_due) then next_due = rk_fmt(t) end
  end
end
local more = (looked >= max or #removed >= max) and "more" or "done"
return pr_reply(P, tostring(P.offline), next_due, more, removed)
