-- list: email ids of one status, newest first. ARGV: now, status, offset, limit.
local D = KEYS[1]
local off, n = tonumber(ARGV[3]), tonumber(ARGV[4])
return redis.call("ZREVRANGE", D .. ":st:" .. ARGV[2], off, off + n - 1)
