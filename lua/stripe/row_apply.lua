-- Upsert a customer, subscription or checkout-session row (sk_apply's rules).
-- ARGV: 1 P, 2 table, 3 id, 4 policy, 5 wm ("" = none), 6 set, 7 ins, 8 fill (JSON)
local wm = nil
if ARGV[5] ~= "" then wm = tonumber(ARGV[5]) end
return sk_apply(ARGV[1], ARGV[2], ARGV[3], ARGV[4], wm,
  cjson.decode(ARGV[6]), cjson.decode(ARGV[7]), cjson.decode(ARGV[8]))
