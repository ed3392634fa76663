-- PaymentIntent rows (spec §3.7, S4): "succeeded" inserts or marks succeeded,
-- "failed" inserts or updates a status that is not succeeded, both fill a missing
-- customer; "link_customer" only fills the customer of an existing row.
-- ARGV: 1 P, 2 mode, 3 id, 4 fields (JSON: cus, amount, currency, status, created,
-- metadata, user_id, org_id)
local P, mode, id = ARGV[1], ARGV[2], ARGV[3]
local key = KEYS[2]
local f = cjson.decode(ARGV[4])
local cur = sk_row(key)
local exists = cur.rank ~= nil
local new = {}
if not exists then
  if mode == "link_customer" then return "MISSING" end
  for k, v in pairs(f) do
    if not sk_empty(v) then new[k] = v end
  end
  sk_commit(P, "pay", key, id, cur, new)
  return "INSERTED"
end
if not sk_empty(f.cus) and sk_empty(cur.cus) then new.cus = f.cus end
if mode == "succeeded" then
  new.status = "succeeded"
elseif mode == "failed" and cur.status ~= "succeeded" then
  new.status = f.status
end
if next(new) == nil then return "UNCHANGED" end
sk_commit(P, "pay", key, id, cur, new)
return "UPDATED"
