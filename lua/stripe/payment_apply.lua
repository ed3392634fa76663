-- PaymentIntent rows (sk_payment). ARGV: 1 P, 2 mode, 3 id, 4 fields (JSON: cus,
-- amount, currency, status, created, metadata, user_id, org_id)
return sk_payment(ARGV[1], ARGV[2], ARGV[3], cjson.decode(ARGV[4]))
