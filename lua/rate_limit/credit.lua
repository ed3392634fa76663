-- credit: give units back to one shard (refund), clamped at the per-shard capacity.
-- KEYS[1] state hash
-- ARGV: now|"", config (see rl_cfg), shard|"" ("" = the shard with the lowest
--       projected value), amount
-- Reply: {shard, value, ts, written (1/0)}; a missing shard is full: nothing is written.
local key = KEYS[1]
local now = rk_now(ARGV[1])
local cfg = rl_cfg(ARGV[2])
local amount = tonumber(ARGV[4])
local shard = rk_optnum(ARGV[3])
if shard == nil then
  local lowest = nil
  for i = 0, cfg.shards - 1 do
    local st = rl_get(key, i)
    if st then
      local v = rl_calc(st, cfg, now, 0, 0)
      if lowest == nil or v < lowest then
        lowest, shard = v, i
      end
    end
  end
  if shard == nil then shard = 0 end
end
local st = rl_get(key, shard)
if st == nil then
  local v, ts = rl_calc(nil, cfg, now, 0, 0)
  return {tostring(shard), rk_fmt(v), rk_fmt(ts), "0"}
end
local v, ts = rl_calc(st, cfg, now, 0, 0)
v = math.min(v + amount, cfg.cap)
rl_stage(key, {shard = shard, value = v, ts = ts, existed = true})
rl_flush(key, cfg, now)
return {tostring(shard), rk_fmt(v), rk_fmt(ts), "1"}
