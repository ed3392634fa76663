-- get: the freshness check (spec §4.2); never changes the entry.
-- KEYS[1] entry hash, KEYS[2] stats hash
-- ARGV: now|"", read_ttl|"", canonical args, count (1 = count a hit/miss in stats)
-- Reply: {"hit", value} or {"miss", stale entry id|""}
local r = redis.call("HMGET", KEYS[1], "v", "a", "id", "c", "x")
local out
if not r[1] then
  out = {"miss", ""}
elseif r[2] ~= ARGV[3] then
  out = {"miss", r[3]} -- hash collision guard: never serve other args' value
elseif ac_fresh(tonumber(r[4]), rk_optnum(r[5]), rk_now(ARGV[1]), rk_optnum(ARGV[2])) then
  out = {"hit", r[1]}
else
  out = {"miss", r[3]}
end
if ARGV[4] == "1" then
  redis.call("HINCRBY", KEYS[2], out[1] == "hit" and "hits" or "misses", 1)
end
return out
