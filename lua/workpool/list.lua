-- list: items of one index with their hashes (admin). ARGV: now, opts, index
-- ("running" | "pending" | "dlq" | "live" | "done"), limit. Reply {now, {id, score, fields}...}
local idx = {running = K_RUNNING, pending = K_PENDING, dlq = K_DLQ, live = K_LIVE, done = K_DONE}
local rows = redis.call("ZRANGE", idx[ARGV[3]], 0, tonumber(ARGV[4]) - 1, "WITHSCORES")
local out = {rk_fmt(NOW)}
for i = 1, #rows, 2 do
  local id = rows[i]
  if ARGV[3] == "pending" then
    id = string.sub(id, 18)
  end
  out[#out + 1] = {id, rows[i + 1], redis.call("HGETALL", wkey(id))}
end
return out
