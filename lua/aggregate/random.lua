-- random: a uniform pick inside (lo, hi) in one snapshot (count and
-- pick in one script, so the pick cannot miss a range that shrank). KEYS T:m, T:n
-- ARGV: r in [0, 1) drawn by the caller, lo, hi. Reply: {pos, sum} or {} when empty.
local t = agg_open(KEYS[1], KEYS[2])
return agg_run(function()
  local lo, hi = agg_opt(ARGV[2]), agg_opt(ARGV[3])
  local n = agg_range(t, lo, hi, false)
  if n == 0 then return {} end
  local k = math.floor(tonumber(ARGV[1]) * n)
  if k >= n then k = n - 1 end
  local pos, s = agg_at(t, k, lo, hi)
  return { pos, string.format("%.17g", s) }
end)
