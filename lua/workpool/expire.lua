-- expire: delete finished work past its retention (batch). ARGV: now, opts, limit.
-- Reply: number deleted
local ids = redis.call("ZRANGEBYSCORE", K_DONE, "-inf", rk_fmt(NOW), "LIMIT", 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local wk = wkey(id)
  if redis.call("HGET", wk, "state") == "finished" then
    redis.call("DEL", wk)
  end
  redis.call("ZREM", K_DONE, id)
end
return #ids
