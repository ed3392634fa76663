-- oc_done: the on_complete obligation of a finished workflow was met (done) or its
-- callback raised (failed). KEYS[1] W. ARGV: status. Reply: 1 when it was pending.
if redis.call("HGET", KEYS[1], "ocs") ~= "pending" then
  return 0
end
redis.call("HSET", KEYS[1], "ocs", ARGV[1])
return 1
