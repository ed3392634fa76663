-- cb_fail: count a raising on_email_event call of one callback job (its work id), so
-- handler failures are limited to callback_max_attempts while a lost worker's
-- attempt is always retried. ARGV: now, call id, ttl ms. Reply: failures so far.
local k = KEYS[1] .. ":cbf:" .. ARGV[2]
local n = redis.call("INCR", k)
redis.call("PEXPIRE", k, tonumber(ARGV[3]))
return n
