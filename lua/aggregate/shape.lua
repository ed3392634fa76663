-- shape: the tree level by level for debugging (breadth first, at most max_nodes
-- nodes read). KEYS T:m, T:n. ARGV: max_nodes
-- Reply: per level: nodes, min items, max items, total items (levels fully read
-- only; a level cut short by max_nodes is left out), then "truncated" 0/1.
local t = agg_open(KEYS[1], KEYS[2])
return agg_run(function()
  local budget = tonumber(ARGV[1])
  local out = {}
  if t.root == "" then return { 0 } end
  local level = { t.root }
  while #level > 0 do
    if #level > budget then
      out[#out + 1] = 1
      return out
    end
    budget = budget - #level
    local lo, hi, total, nxt = nil, 0, 0, {}
    for _, id in ipairs(level) do
      local node = agg_kids(agg_load(t, id))
      local n = #node.k
      if lo == nil or n < lo then lo = n end
      if n > hi then hi = n end
      total = total + n
      if not node.leaf then
        for j = 1, #node.c do nxt[#nxt + 1] = node.c[j] end
      end
      t.cache[id] = nil
    end
    out[#out + 1] = #level
    out[#out + 1] = lo
    out[#out + 1] = hi
    out[#out + 1] = total
    level = nxt
  end
  out[#out + 1] = 0
  return out
end)
