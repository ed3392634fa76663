-- count fetches in the stats. KEYS[1] stats hash; ARGV pairs of field, increment.
for i = 1, #ARGV, 2 do
  if ARGV[i + 1] ~= "0" then redis.call("HINCRBY", KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
