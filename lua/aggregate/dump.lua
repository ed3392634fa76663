-- dump: the whole tree as a depth-first token stream for rendering: "(" opens a
-- node, ")" closes it, anything else is an item position. KEYS T:m, T:n
local t = agg_open(KEYS[1], KEYS[2])
return agg_run(function()
  local out = {}
  local function walk(id)
    local node = agg_kids(agg_load(t, id))
    out[#out + 1] = "("
    for i = 1, #node.k + 1 do
      if not node.leaf then walk(node.c[i]) end
      if i <= #node.k then out[#out + 1] = node.k[i] end
    end
    out[#out + 1] = ")"
  end
  if t.root ~= "" then walk(t.root) end
  return out
end)
