-- purge: delete entries whose write-time TTL has passed and tidy both indexes.
-- KEYS: idx, exp, entry_1 .. entry_n; ARGV: now|"", member_1 .. member_n
-- Reply: how many (still present) entries were deleted.
local now = rk_now(ARGV[1])
local deleted = 0
for i = 3, #KEYS do
  local member = ARGV[i - 1]
  local x = redis.call("HGET", KEYS[i], "x")
  if not x then
    -- gone already (physical expiry) or replaced without TTL: drop the exp member;
    -- the idx member goes only if the entry is gone
    redis.call("ZREM", KEYS[2], member)
    if redis.call("EXISTS", KEYS[i]) == 0 then redis.call("ZREM", KEYS[1], member) end
  elseif tonumber(x) <= now then
    deleted = deleted + redis.call("DEL", KEYS[i])
    redis.call("ZREM", KEYS[1], member)
    redis.call("ZREM", KEYS[2], member)
  else
    redis.call("ZADD", KEYS[2], x, member) -- replaced meanwhile: keep with its real score
  end
end
return deleted
