-- limit_all: consume several limits all-or-nothing (all KEYS in one slot).
-- KEYS[n] state hash of request n (a key may repeat)
-- ARGV: now|"", throws (0/1), then per request 3 values: config, count, randoms
-- Reply: {status, retry|"", then per request: ok (1/0), retry|""}
local now = rk_now(ARGV[1])
local throws = ARGV[2] == "1"
local all_ok, worst = true, nil
local per = {}
local cfgs = {}
for n = 1, #KEYS do
  local b = 3 + (n - 1) * 3
  local cfg = rl_cfg(ARGV[b])
  local key = KEYS[n]
  local ok, retry, ds = rl_evaluate(key, cfg, now, tonumber(ARGV[b + 1]), false, rl_rand(ARGV[b + 2]))
  if ok then
    -- later requests on the same key see this consumption
    for _, d in ipairs(ds) do rl_stage(key, d) end
    cfgs[key] = cfg
  else
    all_ok = false
  end
  if retry ~= nil and (worst == nil or retry > worst) then worst = retry end
  per[#per + 1] = ok and "1" or "0"
  per[#per + 1] = retry and rk_fmt(retry) or ""
end
local status = "OK"
if throws and worst ~= nil then
  status = "THROW"
elseif not all_ok then
  status = "LIMITED"
else
  for key, cfg in pairs(cfgs) do rl_flush(key, cfg, now) end
end
local out = {status, worst and rk_fmt(worst) or ""}
for _, x in ipairs(per) do out[#out + 1] = x end
return out
