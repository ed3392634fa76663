-- count: add one process's limit() outcomes per limit name (metrics).
-- KEYS[1] allowed hash, KEYS[2] limited hash (name -> total); ARGV[1] the most names
-- kept, then triples name, allowed, limited. A name beyond the cap is counted under ""
-- (bounded memory: inline configs may use many names).
local cap = tonumber(ARGV[1])
for i = 2, #ARGV, 3 do
  local name = ARGV[i]
  if redis.call("HEXISTS", KEYS[1], name) == 0 and redis.call("HLEN", KEYS[1]) >= cap then
    name = ""
  end
  redis.call("HINCRBY", KEYS[1], name, ARGV[i + 1])
  redis.call("HINCRBY", KEYS[2], name, ARGV[i + 2])
end
return 1
