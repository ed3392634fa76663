-- list / list_room (§4.4): online users by first join, then offline users by
-- lastDisconnected descending (ties: later join first); offline fill what the
-- online users leave of `limit`.
-- ARGV 5 check token "1"/"0", 6 room secret, 7 online_only "1"/"0", 8 limit (>= 1).
-- Reply: {ended, {user, on, ld, data JSON|"", ...}}
local P = pr_init()
if ARGV[5] == "1" and redis.call("HGET", P.room, "token") ~= ARGV[6] then
  return pr_reply(P, {}) -- unknown, rotated or forged token
end
pr_expire(P, nil)
local limit = tonumber(ARGV[8])
local users = redis.call("ZRANGE", P.on, 0, limit - 1)
if ARGV[7] ~= "1" and #users < limit then
  for _, m in ipairs(redis.call("ZREVRANGE", P.off, 0, limit - #users - 1)) do
    users[#users + 1] = string.sub(m, 18)
  end
end
local out = {}
for _, u in ipairs(users) do
  local rec = pr_get(P, u)
  if rec then
    out[#out + 1] = u
    out[#out + 1] = tostring(rec.on)
    out[#out + 1] = rec.ld
    out[#out + 1] = rec.d or ""
  end
end
return pr_reply(P, out)
