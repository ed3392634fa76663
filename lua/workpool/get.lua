-- get: consistent reads of work items. ARGV: now, opts, then ids.
-- Reply: {now, {fields...} per id} (empty list = gone or past retention)
local out = {rk_fmt(NOW)}
for i = 3, #ARGV do
  local wk = wkey(ARGV[i])
  local h = redis.call("HGETALL", wk)
  local exp = redis.call("HGET", wk, "expires_at")
  if exp and tonumber(exp) <= NOW then
    h = {}
  end
  out[#out + 1] = h
end
return out
