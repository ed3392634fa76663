-- limit / check: evaluate one (name, key) and, in mode "limit", write the outcome.
-- KEYS[1] state hash
-- ARGV: mode ("limit"|"check"), now|"", config x7, count, reserve (0/1), throws (0/1),
--       r_shard1, r_shard2, r_start1, r_start2, ttl_margin_ms
-- Reply (strings): {status, retry|"", [shard, take, value, ts]...}; status OK|LIMITED|THROW.
local key = KEYS[1]
local now = rk_now(ARGV[2])
local cfg = rl_cfg(ARGV, 3)
local count = tonumber(ARGV[10])
local reserve = ARGV[11] == "1"
local throws = ARGV[12] == "1"
local ok, retry, ds = rl_evaluate(key, cfg, now, count, reserve,
  tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16]))
if throws and retry ~= nil then
  return rl_reply("THROW", retry, ds)
end
if not ok then
  return rl_reply("LIMITED", retry, ds)
end
if ARGV[1] == "limit" then
  for _, d in ipairs(ds) do rl_stage(key, d) end
  rl_flush(key, cfg, now, tonumber(ARGV[17]))
end
return rl_reply("OK", retry, ds)
