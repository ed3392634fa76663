-- limit / check of a sharded limit (eval.lua is the one-shard case): evaluate one
-- (name, key) and, in mode "limit", write the outcome. Works for any shard count.
-- KEYS[1] state hash
-- ARGV as eval.lua: op (mode and flags), config, count, now, randoms
-- Reply: 1 for "OK, no wait" (not in mode "limit+"), else strings
--        {status, retry|"", and for "limit+" [shard, take, value, ts]...}; status OK|LIMITED|THROW.
local key = KEYS[1]
local op = ARGV[1]
local mode = string.sub(op, 1, -3)
local reserve = string.byte(op, -2) == 49 -- "1"
local throws = string.byte(op, -1) == 49
local now = rk_now(ARGV[4])
local cfg = rl_cfg(ARGV[2])
local count = tonumber(ARGV[3])
local ok, retry, ds = rl_evaluate(key, cfg, now, count, reserve, rl_rand(ARGV[5]))
local out = nil
if mode == "limit+" then out = ds end
if throws and retry ~= nil then
  return rl_reply("THROW", retry, out)
end
if not ok then
  return rl_reply("LIMITED", retry, out)
end
if mode ~= "check" then
  rl_write(key, cfg, now, ds)
end
if retry == nil and out == nil then
  return 1 -- the hot path: ok, no wait (an integer reply is the cheapest to parse)
end
return rl_reply("OK", retry, out)
