-- get: the freshness check (spec §4.2); never changes the entry.
-- KEYS[1] entry hash, KEYS[2] stats hash
-- ARGV: now|"", read_ttl|"", canonical args, count mode, n:
--   "0" count nothing; "1" a hit or a miss (a plain fetch); "h" only a hit (a
--   single-flight fetch: its miss is counted when its flight ends); "c" n coalesced
--   fetches on a hit (the callers that waited for another caller's run).
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
local mode = ARGV[4]
if mode == "1" then
  redis.call("HINCRBY", KEYS[2], out[1] == "hit" and "hits" or "misses", 1)
elseif out[1] == "hit" and mode == "h" then
  redis.call("HINCRBY", KEYS[2], "hits", 1)
elseif out[1] == "hit" and mode == "c" then
  redis.call("HINCRBY", KEYS[2], "coalesced", ARGV[5])
end
return out
