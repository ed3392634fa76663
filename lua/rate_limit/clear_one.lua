-- clear_all helper: delete one state hash if it was created at or before `before`.
-- KEYS[1] state hash; ARGV: now|"", before|"" ("" = now). Reply: 1 deleted, 0 kept.
local before = rk_optnum(ARGV[2])
if before == nil then before = rk_now(ARGV[1]) end
local c = redis.call("HGET", KEYS[1], "c")
if c and tonumber(c) <= before then
  redis.call("DEL", KEYS[1])
  return 1
end
return 0
