-- get_value: read the stored state of the sampled shards (never writes).
-- KEYS[1] state hash; ARGV: now|"", shard indices...
-- Reply: {now, [value|"", ts|""] per sampled shard}
local key = KEYS[1]
local out = {rk_fmt(rk_now(ARGV[1]))}
for x = 2, #ARGV do
  local r = redis.call("HMGET", key, ARGV[x] .. ":v", ARGV[x] .. ":ts")
  out[#out + 1] = r[1] or ""
  out[#out + 1] = r[2] or ""
end
return out
