-- cleanup (§4.8): delete up to `limit` emails finalized (index "fin") or created
-- (index "created") strictly before the cutoff. ARGV: now, index, older_than_ms, limit.
-- Reply: number deleted
local D = KEYS[1]
local NOW = rk_now(ARGV[1])
local cutoff = NOW - tonumber(ARGV[3])
local ids = redis.call("ZRANGEBYSCORE", D .. ":" .. ARGV[2], "-inf", "(" .. rk_fmt(cutoff),
  "LIMIT", 0, tonumber(ARGV[4]))
for _, id in ipairs(ids) do
  rs_delete(D, id)
end
return #ids
