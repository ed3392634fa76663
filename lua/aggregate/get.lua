-- get: the sum stored at a position. KEYS T:m, T:n. ARGV: pos
-- Reply: sum ("%.17g") or "" when absent.
local t = agg_open(KEYS[1], KEYS[2])
return agg_run(function()
  local s = agg_get(t, ARGV[1])
  if s == nil then return "" end
  return string.format("%.17g", s)
end)
