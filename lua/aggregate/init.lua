-- init: create an empty tree with settings. KEYS T:m, T:n
-- ARGV: M, lazy, now, ns. Reply: 2 created, or AGG_TREE_EXISTS.
local t = agg_open(KEYS[1], KEYS[2])
return agg_run(function()
  if t.exists then agg_fail("AGG_TREE_EXISTS", "tree already initialized") end
  agg_ensure(t, ARGV[1], ARGV[2], ARGV[3], ARGV[4])
  t.changed = true
  agg_commit(t, "0")
  return 2
end)
