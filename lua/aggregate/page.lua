-- page: up to limit items strictly between lo and hi, ascending or descending.
-- KEYS T:m, T:n. ARGV: lo, hi, order ("asc"/"desc"), limit
-- Reply: cursor (last position, "" when done), done (1/0), pos_1, sum_1, ...
local t = agg_open(KEYS[1], KEYS[2])
return agg_run(function()
  return agg_page(t, agg_opt(ARGV[1]), agg_opt(ARGV[2]), ARGV[3] == "desc", tonumber(ARGV[4]))
end)
