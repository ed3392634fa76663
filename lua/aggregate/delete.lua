-- delete: remove one item. KEYS T:m, T:n, T:i
-- ARGV: notify, pos, if_exists (0/1), id, default M, default lazy
-- Reply: {the removed item's sum ("%.17g") or "" when absent and if_exists,
--   indexed "1" when it was written by id, dropped "1" when the tree is now gone},
-- or DELETE_MISSING_KEY.
local t = agg_open(KEYS[1], KEYS[2])
return agg_run(function()
  local s = agg_delete(t, ARGV[2], ARGV[3] == "1")
  if s == nil then return {"", "0", "0"} end
  local indexed = agg_unindex(KEYS[3], ARGV[4], ARGV[2])
  agg_commit(t, ARGV[1])
  local dropped = agg_drop_if_empty(t, KEYS[3], ARGV[5], ARGV[6])
  return {string.format("%.17g", s), indexed and "1" or "0", dropped and "1" or "0"}
end)
