-- limit / check of a sharded limit (eval.lua is the one-shard case): evaluate one
-- (name, key) and, in mode "limit", write the outcome. Works for any shard count.
-- KEYS[1] state hash
-- ARGV as eval.lua: op (mode and flags), config, count, now, randoms
-- Reply: 1 for "OK, no wait" (not in the "+" modes), else strings
--        {status, retry|"", and for "+" modes [shard, take, value, ts]...}; status OK|LIMITED|THROW.
local key = KEYS[1]
local mode, reserve, throws = rl_op(ARGV[1])
local now = rk_now(ARGV[4])
local cfg = rl_cfg(ARGV[2])
local count = tonumber(ARGV[3])
local ok, retry, ds = rl_evaluate(key, cfg, now, count, reserve, rl_rand(ARGV[5]))
local out = nil
if mode == "limit+" or mode == "check+" then out = ds end
local refused = rl_refused(throws, ok, retry, out)
if refused then return refused end
if mode ~= "check" and mode ~= "check+" then
  rl_write(key, cfg, now, ds)
end
return rl_ok(retry, out)
