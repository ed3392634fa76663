-- customer.subscription.created (sk_sub_created).
-- ARGV: 1 P, 2 id, 3 wm, 4 row fields (JSON), 5 user_id, 6 org_id
return sk_sub_created(ARGV[1], ARGV[2], tonumber(ARGV[3]), cjson.decode(ARGV[4]), ARGV[5],
  ARGV[6])
