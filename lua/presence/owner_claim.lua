-- owner_claim: KEYS[1] global session-id owner key. ARGV 1 new value, 2 value the
-- caller may replace|"", 3 PX ms|"" (a pending claim is a lease; a final one has no
-- TTL). Sets it when absent, already the new value, or still the replaceable one.
-- Reply: {"ok"} or {"taken", current value}
local cur = redis.call("GET", KEYS[1])
if not cur or cur == ARGV[1] or (ARGV[2] ~= "" and cur == ARGV[2]) then
  if ARGV[3] ~= "" then
    redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[3])
  else
    redis.call("SET", KEYS[1], ARGV[1])
  end
  return {"ok"}
end
return {"taken", cur}
