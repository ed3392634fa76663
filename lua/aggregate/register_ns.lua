-- register_ns: remember a namespace in creation order (idempotent: a member
-- already listed keeps its place; called after the write that created the tree).
-- KEYS registry ZSET, sequence counter. ARGV: member, ...
-- Reply: number of members added.
local added = 0
for i = 1, #ARGV do
  if not redis.call("ZSCORE", KEYS[1], ARGV[i]) then
    redis.call("ZADD", KEYS[1], redis.call("INCR", KEYS[2]), ARGV[i])
    added = added + 1
  end
end
return added
