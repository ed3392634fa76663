-- stats: settings and shape summary. KEYS T:m, T:n
-- Reply: exists (0/1), height, nodes, M, lazy, count, sum, ver
local t = agg_open(KEYS[1], KEYS[2])
return agg_run(function()
  local height = 0
  if t.root ~= "" then
    local node = agg_load(t, t.root)
    height = 1
    while not node.leaf do
      node = agg_load(t, agg_kids(node).c[1])
      height = height + 1
    end
  end
  return { t.exists and 1 or 0, height, redis.call("HLEN", KEYS[2]), t.M, t.lazy, t.count,
    string.format("%.17g", t.sum), t.ver }
end)
