-- The webhook fast path: claim an event, run its default sync and record it, in
-- one script (for events whose sync needs no Stripe call).
-- KEYS: 1 P:seq, 2 the row (or any key of the instance when there is none),
--       3 P:evt:<id>, 4 P:events, 5 P:evb:<id>
-- ARGV: 1 P, 2-12 the claim arguments of event_claim.lua (ARGV 1-11 there),
--       13 row id, 14 the operation (JSON, see sk_op), 15 finish: "done" (no user
--       handler runs) or "applied" (handlers run next; the caller marks done)
-- Reply: the claim's reply; a CLAIMED one ends with the operation's outcome.
local c = sk_claim_args(KEYS[3], KEYS[4], KEYS[5], ARGV, 2)
local refusal, rec = sk_claim_check(c)
if refusal then return refusal end
-- the sync first: if it fails (a script error), the claim was never written and
-- the next delivery finds the event as it was
local outcome = "SKIPPED"
if rec[3] ~= "1" then
  outcome = sk_op(ARGV[1], ARGV[13], cjson.decode(ARGV[14]))
end
local claim = sk_claim_write(c, rec)
if ARGV[15] == "done" then
  sk_done(c.key, c.now, c.retention)
else
  redis.call("HSET", c.key, "applied", "1", "applied_at", rk_fmt(c.now))
end
return { "CLAIMED", claim[2], "1", outcome }
