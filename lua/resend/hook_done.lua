-- hook_done: the callback of an applied webhook message is queued; later duplicates
-- need not queue it again. ARGV: now, svix_id, dedupe_ttl_ms.
local wk = KEYS[1] .. ":wh:" .. ARGV[2]
if redis.call("EXISTS", wk) == 1 then
  redis.call("SET", wk, "d", "PX", tonumber(ARGV[3]))
end
return 1
