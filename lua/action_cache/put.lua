-- put: fill an entry unless a reusable one exists (spec §4.3; DEVIATION: an entry
-- already expired at now is never reusable).
-- KEYS[1] entry hash, KEYS[2] idx zset (created-at), KEYS[3] exp zset (expires-at)
-- ARGV: now|"", ttl|"", expired id|"", new id, value, canonical args, gc_grace_ms, member,
--   k (purge as it goes: how many expired members of other entries to report)
-- Reply: {cache_hit, replaced, first} as "0"/"1" (first: the idx was empty -- the name's
-- first entry, or Redis lost its data: the client lists the name again), then up to k
-- members whose write-time TTL has passed (the caller purges them with purge.lua,
-- which declares their keys): each fill removes up to k expired entries, so they
-- cannot pile up faster than k x fills.
local now = rk_now(ARGV[1])
local ttl = rk_optnum(ARGV[2])
local member = ARGV[8]
local r = redis.call("HMGET", KEYS[1], "a", "id", "c", "x")
local existed = r[2] ~= false and r[2] ~= nil
if existed then
  local has_ttl = r[4] ~= false and r[4] ~= nil
  local reusable = has_ttl == (ttl ~= nil)
    and r[2] ~= ARGV[3]
    and r[1] == ARGV[6]
    and ac_fresh(tonumber(r[3]), rk_optnum(r[4]), now, nil)
  if reusable then return ac_expired({"1", "0", "0"}, KEYS[3], now, tonumber(ARGV[9]), member) end
  redis.call("DEL", KEYS[1])
end
local fields = {"v", ARGV[5], "a", ARGV[6], "id", ARGV[4], "c", rk_fmt(now)}
if ttl ~= nil then
  fields[#fields + 1] = "x"
  fields[#fields + 1] = rk_fmt(now + ttl)
end
redis.call("HSET", KEYS[1], unpack(fields))
local first = redis.call("EXISTS", KEYS[2]) == 0
redis.call("ZADD", KEYS[2], rk_fmt(now), member)
if ttl ~= nil then
  redis.call("ZADD", KEYS[3], rk_fmt(now + ttl), member)
  -- physical lifetime: logical TTL + grace, relative (never PEXPIREAT)
  local life = math.ceil(ttl + tonumber(ARGV[7]))
  if life < 1 then life = 1 end
  redis.call("PEXPIRE", KEYS[1], life)
else
  redis.call("ZREM", KEYS[3], member)
end
return ac_expired({"0", existed and "1" or "0", first and "1" or "0"}, KEYS[3], now,
  tonumber(ARGV[9]), member)
