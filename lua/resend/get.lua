-- get: an email record and its delivery events in one consistent read. ARGV: now, id.
-- Reply: {fields (flat HGETALL), events}
local D = KEYS[1]
return {redis.call("HGETALL", D .. ":e:" .. ARGV[2]), redis.call("LRANGE", D .. ":ev:" .. ARGV[2], 0, -1)}
