-- due_lower: KEYS[1] due index; ARGV 1 room id, 2 t. Lower the room's score to t
-- (or add it): a portable ZADD LT.
local cur = redis.call("ZSCORE", KEYS[1], ARGV[1])
if not cur or tonumber(ARGV[2]) < tonumber(cur) then
  redis.call("ZADD", KEYS[1], ARGV[2], ARGV[1])
  return 1
end
return 0
