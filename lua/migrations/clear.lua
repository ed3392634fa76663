-- clear (spec §4.7 clearAll): delete one migration's state (not its data) when it
-- was created at or before ARGV[2]. ARGV: 1 now, 2 before (ms). Reply: 1 | 0
local S = KEYS[1]
local created = redis.call("HGET", S, "created")
if not created then
  redis.call("DEL", KEYS[2])
  return 1
end
if tonumber(created) > tonumber(ARGV[2]) then return 0 end
redis.call("DEL", S, KEYS[2])
return 1
