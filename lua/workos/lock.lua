-- A lease lock judged on the App's clock (reconcile: one pull run at a time).
-- KEYS: 1 lock   ARGV: 1 now, 2 P, 3 op (acquire|release), 4 token, 5 ttl ms
-- The value is "<deadline ms>|<token>"; PEXPIRE only guarantees the key goes.
local now = rk_now(ARGV[1])
local cur = redis.call("GET", KEYS[1])
local deadline, holder = nil, nil
if cur then
  local bar = string.find(cur, "|", 1, true)
  deadline = tonumber(string.sub(cur, 1, bar - 1))
  holder = string.sub(cur, bar + 1)
end
if ARGV[3] == "acquire" then
  if cur and holder ~= ARGV[4] and deadline > now then
    return 0
  end
  redis.call("SET", KEYS[1], rk_fmt(now + tonumber(ARGV[5])) .. "|" .. ARGV[4], "PX", ARGV[5])
  return 1
end
if holder == ARGV[4] then
  redis.call("DEL", KEYS[1])
  return 1
end
return 0
