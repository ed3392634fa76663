-- range: count and sum of the items strictly between lo and hi, for one or
-- more (lo, hi) pairs read in one snapshot. KEYS T:m, T:n
-- ARGV: lo_1, hi_1, lo_2, hi_2, ... ("" = unbounded)
-- Reply: count_1, sum_1 ("%.17g"), count_2, sum_2, ...
local t = agg_open(KEYS[1], KEYS[2])
return agg_run(function()
  local out = {}
  for i = 1, #ARGV, 2 do
    local c, s = agg_range(t, agg_opt(ARGV[i]), agg_opt(ARGV[i + 1]), true)
    out[#out + 1] = c
    out[#out + 1] = string.format("%.17g", s)
  end
  return out
end)
