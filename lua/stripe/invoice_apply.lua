-- Invoice upsert under the status ranking (spec §4.3), or payment_failed.
-- ARGV: 1 P, 2 mode ("upsert" | "payment_failed"), 3 id, 4 fields (JSON: cus, sub,
-- status, amount_due, amount_paid, created, metadata, user_id, org_id; upsert only)
local P, mode, id = ARGV[1], ARGV[2], ARGV[3]
local key = KEYS[2]
local cur = sk_row(key)
local exists = cur.rank ~= nil
if mode == "payment_failed" then
  if not exists then return "MISSING" end
  if sk_status_rank(cur.status) < 1 then
    sk_commit(P, "inv", key, id, cur, { status = "open" })
    return "UPDATED"
  end
  return "UNCHANGED"
end
local f = cjson.decode(ARGV[4])
-- missing linkage is inherited from the subscription row
if not sk_empty(f.sub) and (sk_empty(f.user_id) or sk_empty(f.org_id)) then
  local s = redis.call("HMGET", P .. ":sub:" .. f.sub, "user_id", "org_id")
  if sk_empty(f.user_id) and not sk_empty(s[1]) then f.user_id = s[1] end
  if sk_empty(f.org_id) and not sk_empty(s[2]) then f.org_id = s[2] end
end
local new = { cus = f.cus }
if not sk_empty(f.sub) then new.sub = f.sub end
local use = (not exists) or sk_status_rank(f.status) >= sk_status_rank(cur.status)
if use then
  new.status = f.status
  new.amount_due = f.amount_due
  new.amount_paid = f.amount_paid
  new.created = f.created
  new.metadata = f.metadata
  if not sk_empty(f.user_id) then new.user_id = f.user_id end
  if not sk_empty(f.org_id) then new.org_id = f.org_id end
end
sk_commit(P, "inv", key, id, cur, new)
if not exists then return "INSERTED" end
if use then return "UPDATED" end
return "KEPT"
