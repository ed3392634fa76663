-- make_root_lazy: mark the root lazy (a flag kept for parity with the reference;
-- results never depend on it). KEYS T:m
-- Reply: 1 when the tree exists, else 0.
if redis.call("HEXISTS", KEYS[1], "M") == 0 then return 0 end
redis.call("HSET", KEYS[1], "lazy", "1")
return 1
