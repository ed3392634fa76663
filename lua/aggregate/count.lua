-- count: like range without sums (index_of, count). KEYS T:m, T:n
-- ARGV: lo_1, hi_1, ... ("" = unbounded). Reply: count_1, count_2, ...
local t = agg_open(KEYS[1], KEYS[2])
return agg_run(function()
  local out = {}
  for i = 1, #ARGV, 2 do
    out[#out + 1] = (agg_range(t, agg_opt(ARGV[i]), agg_opt(ARGV[i + 1]), false))
  end
  return out
end)
