-- list: crons in creation order, a page at a time (one consistent read).
-- ARGV: now, offset, limit. Reply: {total, now, {{id, fields}...}}
local offset, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local ids = redis.call("ZRANGE", K_ORDER, offset, offset + limit - 1)
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = {id, redis.call("HGETALL", jkey(id))}
end
return {redis.call("ZCARD", K_ORDER), rk_fmt(NOW), out}
