-- customer.subscription.created: insert the subscription if missing (wm set on
-- insert), then give the subscription's invoices the linkage they lack.
-- ARGV: 1 P, 2 id, 3 wm, 4 row fields (JSON), 5 user_id, 6 org_id
local P, id = ARGV[1], ARGV[2]
local out = sk_apply(P, "sub", id, "insert", tonumber(ARGV[3]), cjson.decode(ARGV[4]), {}, {})
local link = { user_id = ARGV[5], org_id = ARGV[6] }
if link.user_id ~= "" or link.org_id ~= "" then
  local ids = redis.call("ZRANGE", sk_ix(P, "inv:sub", id), 0, -1)
  for _, inv in ipairs(ids) do
    local key = P .. ":inv:" .. inv
    local cur = sk_row(key)
    if cur.rank ~= nil then
      local new = {}
      for f, v in pairs(link) do
        if v ~= "" and sk_empty(cur[f]) then new[f] = v end
      end
      if next(new) ~= nil then sk_commit(P, "inv", key, inv, cur, new) end
    end
  end
end
return out
