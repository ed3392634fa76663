-- delete: remove one item. KEYS T:m, T:n
-- ARGV: notify, pos, if_exists (0/1)
-- Reply: the removed item's sum ("%.17g"), "" when absent and if_exists, or
-- DELETE_MISSING_KEY.
local t = agg_open(KEYS[1], KEYS[2])
return agg_run(function()
  local s = agg_delete(t, ARGV[2], ARGV[3] == "1")
  if s == nil then return "" end
  agg_commit(t, ARGV[1])
  return string.format("%.17g", s)
end)
