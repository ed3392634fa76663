-- limit / check of a one-shard limit (the common case; eval_sharded.lua takes any
-- shard count): the decision of rl_evaluate for shard 0 without its tables, one
-- HMGET of constant field names, one HSET, one PEXPIRE.
-- KEYS[1] state hash
-- ARGV: op = mode ("limit"|"check"|"limit+"|"check+": replying with the decisions)
--       followed by the flags "<reserve><throws>" as 0/1 digits, e.g. "limit00";
--       config (see rl_cfg; shards 1); count; now (absent or "": server TIME);
--       randoms (absent, "" or 4 numbers)
-- Reply: 1 for "OK, no wait" (not in the "+" modes), else strings
--        {status, retry|"", and for "+" modes [shard, take, value, ts]...}; status OK|LIMITED|THROW.
local key = KEYS[1]
local mode, reserve, throws = rl_op(ARGV[1])
local now = rk_now(ARGV[4])
local cfg = ARGV[2]
-- the hot path's numbers and where max_reserved and start begin (read when needed);
-- the kind is 2 letters, shards must be 1
local rate, period, cap, at_maxres, at_start =
  string.match(cfg, "^(%S+) (%S+) (%S+) ()%S+ 1 ()", 4)
if at_start == nil then
  return redis.error_reply("rate_limit/eval takes one-shard configs")
end
local count = tonumber(ARGV[3])
local fw = string.byte(cfg, 1) == 102 -- "fw"
rate, period, cap = tonumber(rate), tonumber(period), tonumber(cap)
local r = redis.call("HMGET", key, "0:v", "0:ts")
local v, ts, start, rstart = tonumber(r[1]), tonumber(r[2]), nil, 0
if v == nil and fw then -- a new window: its phase
  start = tonumber(string.sub(cfg, at_start)) -- "-": nil
  if start == nil then rstart = rl_rand(ARGV[5])[3] end
end
local value, retry
value, ts, retry = rl_project(fw, rate, period, cap, start, v, ts, now, count, rstart)
local ok = value >= 0
if not ok and reserve then -- DEVIATION Q1: max_reserved = 0 means no debt
  local maxres = string.match(cfg, "^%S+", at_maxres)
  ok = maxres == "-" or -value <= tonumber(maxres)
end
local out = nil
if mode == "limit+" or mode == "check+" then
  out = {{shard = 0, take = count, value = value, ts = ts}}
end
local refused = rl_refused(throws, ok, retry, out)
if refused then return refused end
if mode ~= "check" and mode ~= "check+" then
  if v == nil then -- new: with the creation time for clear_all
    redis.call("HSET", key, "0:v", rk_fmt(value), "0:ts", rk_fmt(ts), "c", rk_fmt(now))
  else
    redis.call("HSET", key, "0:v", rk_fmt(value), "0:ts", rk_fmt(ts))
  end
  -- relative TTL as rl_expire: until full again, plus max(period, 1 s)
  local ttl = math.ceil(rl_full_at(fw, rate, period, cap, value, ts) - now + math.max(period, 1000))
  if ttl < 1 then ttl = 1 end
  if not (ttl <= 1e14) then ttl = 1e14 end -- as rl_expire: a debt beyond ~3,000 years
  redis.call("PEXPIRE", key, rk_fmt(ttl)) -- a string: Redis would format a number with %.17g
end
return rl_ok(retry, out)
