-- validate: check every B-tree invariant over the whole tree (O(n): an admin and test
-- tool): every non-root node holds M/2..M items (the root 0..M); an internal node with
-- c items has c + 1 children; items strictly increase and lie between the parent's
-- separators; all leaves are at one depth; stored counts and sums equal the subtree's. KEYS T:m, T:n. Reply: "OK" or the first violation found.
local t = agg_open(KEYS[1], KEYS[2])
local half = t.M / 2
local leaf_depth = nil
local seen = 0

local function close(a, b)
  if a == b then return true end
  return math.abs(a - b) <= 1e-9 * math.max(1, math.abs(a), math.abs(b))
end

local function check(id, lo, hi, depth, is_root)
  local node = agg_loadw(t, id)
  seen = seen + 1
  local n = #node.k
  if n > t.M then agg_fail("AGG_CORRUPT", "node " .. id .. " has " .. n .. " items > M") end
  if not is_root and n < half then
    agg_fail("AGG_CORRUPT", "node " .. id .. " has " .. n .. " items < M/2")
  end
  if #node.s ~= n then agg_fail("AGG_CORRUPT", "node " .. id .. " sums/items mismatch") end
  for i = 1, n do
    local prev = i > 1 and node.k[i - 1] or lo
    if prev and agg_cmp(prev, node.k[i]) >= 0 then
      agg_fail("AGG_CORRUPT", "node " .. id .. " item " .. i .. " out of order")
    end
  end
  if n > 0 and hi and agg_cmp(node.k[n], hi) >= 0 then
    agg_fail("AGG_CORRUPT", "node " .. id .. " last item not below its separator")
  end
  local c, s = n, 0
  for i = 1, n do s = s + node.s[i] end
  if node.leaf then
    if leaf_depth == nil then leaf_depth = depth end
    if leaf_depth ~= depth then agg_fail("AGG_CORRUPT", "leaves at different depths") end
    return c, s
  end
  if n == 0 then agg_fail("AGG_CORRUPT", "internal node " .. id .. " has no items") end
  if #node.c ~= n + 1 or #node.cc ~= n + 1 or #node.cs ~= n + 1 then
    agg_fail("AGG_CORRUPT", "internal node " .. id .. " needs " .. (n + 1) .. " children")
  end
  for j = 1, n + 1 do
    local cc, cs = check(node.c[j], j > 1 and node.k[j - 1] or lo, j <= n and node.k[j] or hi,
      depth + 1, false)
    if cc ~= node.cc[j] or not close(cs, node.cs[j]) then
      agg_fail("AGG_CORRUPT", "node " .. id .. " child " .. node.c[j] .. " summary is stale")
    end
    c, s = c + cc, s + cs
  end
  return c, s
end

return agg_run(function()
  if t.M < 4 or t.M % 2 ~= 0 then agg_fail("AGG_CORRUPT", "bad M " .. t.M) end
  local c, s = 0, 0
  if t.root ~= "" then c, s = check(t.root, nil, nil, 1, true) end
  if c ~= t.count or not close(s, t.sum) then
    agg_fail("AGG_CORRUPT", "meta totals " .. t.count .. " do not match the tree's " .. c)
  end
  local stored = redis.call("HLEN", KEYS[2])
  if stored ~= seen then
    agg_fail("AGG_CORRUPT", stored .. " nodes stored but " .. seen .. " reachable")
  end
  return "OK"
end)
