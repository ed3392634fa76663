-- Claim a verified webhook event for processing (spec §7.4).
-- KEYS: 1 P:evt:<id> (HASH), 2 P:events (ZSET id -> received ms: the dedupe log),
--       3 P:evb:<id> (STRING: the event's body, for replay; its own, shorter expiry)
-- ARGV: 1 now|"", 2 lease ms, 3 type, 4 created (s), 5 body, 6 retention ms,
--       7 log cap, 8 id, 9 signature timestamp (s), 10 tolerance (s, 0 = none),
--       11 body retention ms (0 = the body is not kept)
-- Reply: {"DONE"} | {"BUSY", lease_until} | {"CLAIMED", token, applied "1"/"0"}
--        | {"TOO_OLD", now} (the signature's timestamp is outside the tolerance
--        on this clock: nothing is written)
local c = sk_claim_args(KEYS[1], KEYS[2], KEYS[3], ARGV, 1)
local refusal, rec = sk_claim_check(c)
if refusal then return refusal end
return sk_claim_write(c, rec)
