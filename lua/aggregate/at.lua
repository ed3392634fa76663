-- at: the item at an offset (negative = from the end) inside (lo, hi), for
-- one or more queries in one snapshot. KEYS T:m, T:n
-- ARGV: offset_1, lo_1, hi_1, ... Reply: pos_1, sum_1, ... or AGG_OUT_OF_RANGE.
local t = agg_open(KEYS[1], KEYS[2])
return agg_run(function()
  local out = {}
  for i = 1, #ARGV, 3 do
    local pos, s = agg_at(t, tonumber(ARGV[i]), agg_opt(ARGV[i + 1]), agg_opt(ARGV[i + 2]))
    out[#out + 1] = pos
    out[#out + 1] = string.format("%.17g", s)
  end
  return out
end)
