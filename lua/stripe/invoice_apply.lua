-- Invoice upsert under the status ranking, or payment_failed (sk_invoice).
-- ARGV: 1 P, 2 mode ("upsert" | "payment_failed"), 3 id, 4 fields (JSON)
return sk_invoice(ARGV[1], ARGV[2], ARGV[3], cjson.decode(ARGV[4]))
