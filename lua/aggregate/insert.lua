-- insert: add one item. KEYS T:m, T:n
-- ARGV: default M, default lazy, now, ns, notify, pos, sum
-- Reply: 2 when this write created the tree, else 1; AGG_KEY_EXISTS on a duplicate.
local t = agg_open(KEYS[1], KEYS[2])
local created = not t.exists
return agg_run(function()
  agg_ensure(t, ARGV[1], ARGV[2], ARGV[3], ARGV[4])
  agg_insert(t, ARGV[6], tonumber(ARGV[7]))
  agg_commit(t, ARGV[5])
  return created and 2 or 1
end)
