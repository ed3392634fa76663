-- remove a batch of entries of one name (by name, or created at or before `before`).
-- KEYS: idx, exp, entry_1 .. entry_n; ARGV: before|"", member_1 .. member_n
-- An entry re-created after `before` is kept (its index score moved on).
-- Reply: how many entries were deleted.
local before = rk_optnum(ARGV[1])
local deleted = 0
for i = 3, #KEYS do
  local member = ARGV[i - 1]
  local keep = false
  if before ~= nil then
    local c = redis.call("HGET", KEYS[i], "c")
    if c and tonumber(c) > before then keep = true end
  end
  if not keep then
    deleted = deleted + redis.call("DEL", KEYS[i])
    redis.call("ZREM", KEYS[1], member)
    redis.call("ZREM", KEYS[2], member)
  end
end
return deleted
