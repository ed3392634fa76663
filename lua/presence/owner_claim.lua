-- owner_claim: KEYS[1] global session-id owner key. ARGV 1 new value, 2 value the
-- caller judged stale|"". Set it when absent, already ours, or still the stale value.
-- Reply: {"ok"} or {"taken", current value}
local cur = redis.call("GET", KEYS[1])
if not cur or cur == ARGV[1] or (ARGV[2] ~= "" and cur == ARGV[2]) then
  redis.call("SET", KEYS[1], ARGV[1])
  return {"ok"}
end
return {"taken", cur}
