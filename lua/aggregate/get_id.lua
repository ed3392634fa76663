-- get_id: the item written by `id` (the by-id index). KEYS T:m, T:n, T:i. ARGV: id
-- Reply: {pos, sum ("%.17g")} or {} when the id has no item.
local t = agg_open(KEYS[1], KEYS[2])
return agg_run(function()
  local pos = redis.call("HGET", KEYS[3], ARGV[1])
  if not pos then return {} end
  local s = agg_get(t, pos)
  if s == nil then return {} end
  return {pos, string.format("%.17g", s)}
end)
