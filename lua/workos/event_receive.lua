-- Receive one event: deduplicate, claim, apply its user change exactly once, and
-- finish it at once when no handler call is owed (nothing changed, or no handler).
-- KEYS: 1 evt, 2 user, 3 tomb, 4 seq, 5 cursor
-- ARGV: 1 now, 2 P, 3 lease ms, 4 token, 5 type, 6 retention ms, 7 kind
--       (created|updated|deleted|other), 8 uid, 9 user JSON, 10 upd ms,
--       11 E(external id) or "", 12 tombstone ttl ms, 13 has handler "1"/"0",
--       14 cursor value ("" = leave the cursor; set when the event is finished here)
-- Returns {"DUP", changed} | {"BUSY"} | {"DONE", changed} | {"CALL", changed}: CALL
-- means the claim is held under ``token`` and the handler is owed (then event_mark).
local now = rk_now(ARGV[1])
local h = redis.call("HMGET", KEYS[1], "state", "lease_until", "changed")
local state = h[1]
if state == "done" then
  if ARGV[14] ~= "" then redis.call("SET", KEYS[5], ARGV[14]) end
  return {"DUP", tonumber(h[3]) or 0}
end
if state and (tonumber(h[2]) or 0) > now then
  return {"BUSY"}
end
local changed = tonumber(h[3]) or 0
if state ~= "applied" then
  changed = wo_apply(ARGV[2], KEYS[2], KEYS[3], KEYS[4], ARGV[7], ARGV[8], ARGV[9],
    tonumber(ARGV[10]), ARGV[11], ARGV[12])
end
if changed == 0 or ARGV[13] ~= "1" then
  redis.call("HSET", KEYS[1], "state", "done", "changed", changed, "type", ARGV[5],
    "lease_until", "0")
  redis.call("PEXPIRE", KEYS[1], ARGV[6])
  if ARGV[14] ~= "" then redis.call("SET", KEYS[5], ARGV[14]) end
  return {"DONE", changed}
end
redis.call("HSET", KEYS[1], "state", "applied", "changed", changed, "type", ARGV[5],
  "lease_until", rk_fmt(now + tonumber(ARGV[3])), "token", ARGV[4])
-- bounded even if the claimer dies: the record goes with the event retention
redis.call("PEXPIRE", KEYS[1], ARGV[6])
return {"CALL", changed}
