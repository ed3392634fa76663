-- manual_update (§3.3): record the outcome of a manual send, written unconditionally
-- (the email did go out, or the send failed). ARGV: now, id, mode (sent|failed),
-- resend_id ("" = none), error message.
-- Reply: {"OK", {email_id, event json}...} | {"NOT_FOUND"}
local D = KEYS[1]
local NOW = rk_now(ARGV[1])
local id, mode, rid = ARGV[2], ARGV[3], ARGV[4]
local ek = D .. ":e:" .. id
local st = redis.call("HGET", ek, "status")
if not st then
  return {"NOT_FOUND"}
end
local out = {}
if rid ~= "" then
  redis.call("HSET", ek, "resend_id", rid)
end
if mode == "sent" then
  rs_set_status(D, id, st, "sent")
  -- a cancel issued while the send ran is overwritten: the email did go out, and a
  -- sent email is not final
  redis.call("HDEL", ek, "finalized_ms")
  redis.call("ZREM", D .. ":fin", id)
else
  redis.call("HSET", ek, "error_message", ARGV[5])
  rs_set_status(D, id, st, "failed")
  rs_finalize(D, id, NOW)
end
if rid ~= "" then
  rs_record_rid(D, id, rid, NOW, out)
end
return {"OK", out}
