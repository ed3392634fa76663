-- stats: live entries and counters, one snapshot. KEYS idx, exp, stats; ARGV now|"".
-- An entry is live until its write-time expiry (exp score <= now is stale, as in
-- get); idx holds every entry, exp the ones with a TTL, so live = idx - stale.
-- Reply: {entries, hits, misses, coalesced}
local stale = redis.call("ZCOUNT", KEYS[2], "-inf", rk_fmt(rk_now(ARGV[1])))
local s = redis.call("HMGET", KEYS[3], "hits", "misses", "coalesced")
return {redis.call("ZCARD", KEYS[1]) - stale, s[1] or "0", s[2] or "0", s[3] or "0"}
