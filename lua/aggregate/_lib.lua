-- Aggregate: an order-statistics B-tree (every node stores its subtree's count and sum).
--
-- One tree = two keys sharing one hash tag: KEYS T:m (meta hash) and T:n (node hash,
-- field = node id, value = encoded node). Every node lives in T:n, so a script
-- touches only the keys it declares and is single-slot on Cluster.
--
-- Positions are opaque byte strings built by Python so that byte order = value
-- order; they are compared with agg_cmp (string.byte), never with `<`, which uses
-- strcoll and therefore the server's locale.
--
-- Node codec (exact for arbitrary bytes and doubles, identical on Redis and
-- fakeredis; no cjson/cmsgpack):
--   kind lens "|" s_1,...,s_n "|" id_1,...,id_n+1 "|" count_1,... "|" sum_1,... "|" pos_1...pos_n
-- kind "L" (leaf) or "I" (internal); lens two 6-bit digits per key; sums "%.17g";
-- children only on internal nodes, each with its subtree's (count, sum) so
-- count/sum/at/index_of are pure root-to-leaf walks. Nodes are decoded once per script into a cache and every
-- dirty node is written back once, at the end (nothing is written on error).

local sbyte, ssub, sfind, sformat, gmatch = string.byte, string.sub, string.find, string.format, string.gmatch
local tinsert, tremove, tconcat, floor = table.insert, table.remove, table.concat, math.floor

local AGG_FAIL = {}

-- Raise a typed error; agg_run turns it into redis.error_reply("CODE message").
local function agg_fail(code, msg)
  error({ [AGG_FAIL] = true, code = code, msg = msg }, 0)
end

-- Byte-wise three-way comparison (-1, 0, 1); a proper prefix sorts first.
local function agg_cmp(a, b)
  if a == b then return 0 end
  local la, lb = #a, #b
  local n = la < lb and la or lb
  for i = 1, n do
    local x, y = sbyte(a, i), sbyte(b, i)
    if x ~= y then
      if x < y then return -1 end
      return 1
    end
  end
  if la < lb then return -1 end
  return 1
end

-- First index i with keys[i] >= x (or #keys + 1), and whether keys[i] == x.
local function agg_search(keys, x)
  local lo, hi = 1, #keys
  while lo <= hi do
    local mid = floor((lo + hi) / 2)
    local c = agg_cmp(keys[mid], x)
    if c == 0 then return mid, true end
    if c < 0 then lo = mid + 1 else hi = mid - 1 end
  end
  return lo, false
end

-- Decoding is lazy: keys on load; item sums, child ids+counts and child sums each
-- on first use (agg_sums, agg_kids, agg_csums), so a count walk never parses a sum.
-- Writers call agg_full. Section layout (see the header of this file):
--   kind lens "|" sums "|" child ids "|" child counts "|" child sums "|" blob
-- lens: two characters per key, each byte - 48 a 6-bit digit (keys < 4096 bytes),
-- read with one string.byte call instead of a pattern match.
-- node.k (the key table) is itself built on first access (a metatable), so a
-- read walk only cuts out the ~log2(n) keys its binary search probes (agg_key).
local KEYS_META = {
  __index = function(node, field)
    if field ~= "k" then return nil end
    local k = {}
    for i = 1, node.n do
      k[i] = ssub(node.raw, node.base + node.off[i], node.base + node.off[i + 1] - 1)
    end
    rawset(node, "k", k)
    return k
  end,
}

local function agg_decode(str)
  local p1 = sfind(str, "|", 1, true)
  local p2 = sfind(str, "|", p1 + 1, true)
  local p3 = sfind(str, "|", p2 + 1, true)
  local p4 = sfind(str, "|", p3 + 1, true)
  local p5 = sfind(str, "|", p4 + 1, true)
  local off = { 0 }
  local n = 0
  if p1 > 2 then
    local b = { sbyte(str, 2, p1 - 1) }
    local at = 0
    for i = 1, #b, 2 do
      at = at + (b[i] - 48) * 64 + b[i + 1] - 48
      n = n + 1
      off[n + 1] = at
    end
  end
  local node = { leaf = sbyte(str, 1) == 76, raw = str, p = { p1, p2, p3, p4, p5 },
    n = n, off = off, base = p5 + 1 }
  return setmetatable(node, KEYS_META)
end

-- Key i / number of keys / binary search, without building node.k when absent.
local function agg_key(node, i)
  local k = rawget(node, "k")
  if k then return k[i] end
  return ssub(node.raw, node.base + node.off[i], node.base + node.off[i + 1] - 1)
end

local function agg_n(node)
  local k = rawget(node, "k")
  if k then return #k end
  return node.n
end

local function agg_find(node, x)
  local k = rawget(node, "k")
  if k then return agg_search(k, x) end
  local lo, hi = 1, node.n
  while lo <= hi do
    local mid = floor((lo + hi) / 2)
    local c = agg_cmp(agg_key(node, mid), x)
    if c == 0 then return mid, true end
    if c < 0 then lo = mid + 1 else hi = mid - 1 end
  end
  return lo, false
end

local function agg_section(node, i, conv)
  local out = {}
  local p = node.p
  for x in gmatch(ssub(node.raw, p[i] + 1, p[i + 1] - 1), "[^,]+") do
    out[#out + 1] = conv(x)
  end
  return out
end

-- node[field], parsed from section i on first use.
local function agg_lazy(node, field, i)
  local v = node[field]
  if v == nil then
    v = agg_section(node, i, tonumber)
    node[field] = v
  end
  return v
end

local function agg_sums(node) return agg_lazy(node, "s", 1) end

-- Child ids (ID_W decimal digits each) and cumulative child counts (CUM_W digits
-- each) are fixed width, so a read walk picks the one or two it needs with
-- string.sub (agg_child, agg_cum) instead of parsing the whole section.
local ID_W, CUM_W = 10, 12

local function agg_child(node, j)
  if node.c then return node.c[j] end
  local at = node.p[2] + 1 + (j - 1) * ID_W
  return sformat("%d", tonumber(ssub(node.raw, at, at + ID_W - 1)))
end

-- Items in children 1..j (0 for j = 0).
local function agg_cum(node, j)
  if j <= 0 then return 0 end
  if node.cc then
    local c = 0
    for i = 1, j do c = c + node.cc[i] end
    return c
  end
  local at = node.p[3] + 1 + (j - 1) * CUM_W
  return tonumber(ssub(node.raw, at, at + CUM_W - 1))
end

local function agg_kids(node)
  if node.c == nil and not node.leaf then
    local c, cc = {}, {}
    local prev = 0
    for j = 1, agg_n(node) + 1 do
      c[j] = agg_child(node, j)
      local cum = agg_cum(node, j)
      cc[j] = cum - prev
      prev = cum
    end
    node.c, node.cc = c, cc
  end
  return node
end

local function agg_csums(node) return agg_lazy(node, "cs", 4) end

local function agg_full(node)
  local _ = node.k
  agg_sums(node)
  agg_kids(node)
  if not node.leaf then agg_csums(node) end
  node.raw = nil
  return node
end

-- "%.17g" with a per-script memo: most sums repeat (1, 0, a few child totals).
local FMT = {}
local function agg_fmt(x)
  if x ~= x then return sformat("%.17g", x) end
  local f = FMT[x]
  if f == nil then
    f = sformat("%.17g", x)
    FMT[x] = f
  end
  return f
end

local schar = string.char

local function agg_encode(node)
  local k, n = node.k, #node.k
  local lens, sums = {}, {}
  for i = 1, n do
    local l = #k[i]
    lens[i] = schar(48 + floor(l / 64), 48 + l % 64)
    sums[i] = agg_fmt(node.s[i])
  end
  local ids, counts, csums = "", "", ""
  if not node.leaf then
    local idp, cump, sump, cum = {}, {}, {}, 0
    for j = 1, n + 1 do
      idp[j] = sformat("%010d", tonumber(node.c[j]))
      cum = cum + node.cc[j]
      cump[j] = sformat("%012d", cum)
      sump[j] = agg_fmt(node.cs[j])
    end
    ids, counts, csums = tconcat(idp), tconcat(cump), tconcat(sump, ",")
  end
  return (node.leaf and "L" or "I") .. tconcat(lens) .. "|" .. tconcat(sums, ",") .. "|"
    .. ids .. "|" .. counts .. "|" .. csums .. "|" .. tconcat(k)
end

-- (count, sum) of a node's whole subtree, from its items and child summaries.
local function agg_total(node)
  agg_sums(node)
  agg_kids(node)
  if not node.leaf then agg_csums(node) end
  local c, s = #node.k, 0
  for i = 1, c do s = s + node.s[i] end
  if not node.leaf then
    for j = 1, #node.c do
      c = c + node.cc[j]
      s = s + node.cs[j]
    end
  end
  return c, s
end

-- -- tree handle ------------------------------------------------------------------------

local function agg_open(km, kn)
  local m = redis.call("HMGET", km, "root", "next", "M", "lazy", "count", "sum", "ver")
  return {
    km = km, kn = kn, exists = m[3] ~= false,
    root = m[1] or "", next = tonumber(m[2] or "0"), M = tonumber(m[3] or "16"),
    lazy = m[4] or "1", count = tonumber(m[5] or "0"), sum = tonumber(m[6] or "0"),
    ver = tonumber(m[7] or "0"), cache = {}, dirty = {}, gone = {}, changed = false,
  }
end

local function agg_load(t, id)
  local node = t.cache[id]
  if node == nil then
    local raw = redis.call("HGET", t.kn, id)
    if not raw then agg_fail("AGG_CORRUPT", "node " .. id .. " is missing") end
    node = agg_decode(raw)
    node.id = id
    t.cache[id] = node
  end
  return node
end

-- Load for writing: everything decoded.
local function agg_loadw(t, id)
  local node = agg_load(t, id)
  if node.raw then agg_full(node) end
  return node
end

local function agg_touch(t, node)
  t.dirty[node.id] = node
  t.changed = true
end

local function agg_new(t, leaf)
  t.next = t.next + 1
  local node = { id = sformat("%d", t.next), leaf = leaf, k = {}, s = {} }
  if not leaf then node.c, node.cc, node.cs = {}, {}, {} end
  t.cache[node.id] = node
  agg_touch(t, node)
  return node
end

-- A tree's default settings for auto-creation come from ARGV (M, lazy).
local function agg_ensure(t, M, lazy, now, ns)
  if not t.exists then
    t.exists, t.M, t.lazy, t.ns = true, tonumber(M), lazy, ns
    t.created = sformat("%.17g", rk_now(now))
  end
end

-- Write dirty nodes once, drop deleted ones, refresh meta totals; bump ver.
local function agg_commit(t, notify)
  if not t.changed then return end
  local args, n = {}, 0
  for id, node in pairs(t.dirty) do
    if not t.gone[id] then
      args[n + 1] = id
      args[n + 2] = agg_encode(node)
      n = n + 2
      if n >= 400 then
        redis.call("HSET", t.kn, unpack(args, 1, n))
        n = 0
      end
    end
  end
  if n > 0 then redis.call("HSET", t.kn, unpack(args, 1, n)) end
  local dead = {}
  for id in pairs(t.gone) do dead[#dead + 1] = id end
  for i = 1, #dead, 400 do
    redis.call("HDEL", t.kn, unpack(dead, i, math.min(i + 399, #dead)))
  end
  local count, sum = 0, 0
  if t.root ~= "" then count, sum = agg_total(agg_load(t, t.root)) end
  t.count, t.sum, t.ver = count, sum, t.ver + 1
  redis.call("HSET", t.km, "root", t.root, "next", sformat("%d", t.next), "M", sformat("%d", t.M),
    "lazy", t.lazy, "count", sformat("%d", count), "sum", sformat("%.17g", sum),
    "ver", sformat("%d", t.ver))
  if t.created then
    redis.call("HSET", t.km, "created", t.created, "ns", t.ns)
    redis.call("PERSIST", t.km) -- re-created over the tombstone of a dropped tree
  end
  if notify == "1" then
    redis.call("PUBLISH", ssub(t.km, 1, -3) .. ":changed", sformat("%d", t.ver)) -- T:changed
  end
end

-- A tree that a write left empty is dropped (node hash, id index, meta), so emptied
-- trees cost nothing, when the next write would re-create it identically (default
-- settings; a tree given other settings by init or clear is kept). The meta key stays
-- a while as a tombstone holding only the write counter, so that version() keeps
-- counting up when the tree comes back. Call after agg_commit. Returns true if dropped.
local AGG_TOMBSTONE_MS = 3600000

local function agg_drop_if_empty(t, ki, M, lazy)
  if not t.exists or t.count ~= 0 or t.M ~= tonumber(M) or t.lazy ~= lazy then
    return false
  end
  redis.call("DEL", t.kn, ki, t.km)
  redis.call("HSET", t.km, "ver", sformat("%d", t.ver))
  redis.call("PEXPIRE", t.km, AGG_TOMBSTONE_MS)
  return true
end

-- The by-id index (KEYS T:i, field id -> position) of the items written by id: after
-- `pos` of `id` left the tree, forget it if the index pointed there. Returns true when
-- the item was indexed.
local function agg_unindex(ki, id, pos)
  if redis.call("HGET", ki, id) == pos then
    redis.call("HDEL", ki, id)
    return true
  end
  return false
end

-- Run fn under pcall: typed failures become error replies; nothing is committed.
local function agg_run(fn)
  local ok, res = pcall(fn)
  if ok then return res end
  if type(res) == "table" and res[AGG_FAIL] then
    return redis.error_reply(res.code .. " " .. res.msg)
  end
  error(res, 0)
end

-- -- insert ------------------------------------------------------------------------------

local function agg_split(t, node)
  local half = t.M / 2
  local right = agg_new(t, node.leaf)
  local mk, ms = node.k[half + 1], node.s[half + 1]
  for i = half + 2, #node.k do
    right.k[#right.k + 1] = node.k[i]
    right.s[#right.s + 1] = node.s[i]
  end
  for i = #node.k, half + 1, -1 do
    node.k[i] = nil
    node.s[i] = nil
  end
  if not node.leaf then
    for j = half + 2, #node.c do
      right.c[#right.c + 1] = node.c[j]
      right.cc[#right.cc + 1] = node.cc[j]
      right.cs[#right.cs + 1] = node.cs[j]
    end
    for j = #node.c, half + 2, -1 do
      node.c[j], node.cc[j], node.cs[j] = nil, nil, nil
    end
  end
  return mk, ms, right
end

local function agg_insert_into(t, node, pos, s)
  local i, eq = agg_search(node.k, pos)
  if eq then agg_fail("AGG_KEY_EXISTS", "key already exists in node " .. node.id) end
  if node.leaf then
    tinsert(node.k, i, pos)
    tinsert(node.s, i, s)
  else
    local child = agg_loadw(t, node.c[i])
    local mk, ms, right = agg_insert_into(t, child, pos, s)
    if right then
      tinsert(node.k, i, mk)
      tinsert(node.s, i, ms)
      tinsert(node.c, i + 1, right.id)
      tinsert(node.cc, i + 1, 0)
      tinsert(node.cs, i + 1, 0)
      node.cc[i + 1], node.cs[i + 1] = agg_total(right)
      node.cc[i], node.cs[i] = agg_total(child)
    else -- O(1) summary update; recomputed whenever the shape changes
      node.cc[i] = node.cc[i] + 1
      local cs = node.cs[i] + s
      if cs - cs ~= 0 then node.cc[i], cs = agg_total(child) end -- inf/nan: recompute
      node.cs[i] = cs
    end
  end
  agg_touch(t, node)
  if #node.k > t.M then return agg_split(t, node) end
  return nil
end

local function agg_insert(t, pos, s)
  if t.root == "" then t.root = agg_new(t, true).id end
  local root = agg_loadw(t, t.root)
  local mk, ms, right = agg_insert_into(t, root, pos, s)
  if right then
    local top = agg_new(t, false)
    top.k[1], top.s[1] = mk, ms
    top.c[1], top.c[2] = root.id, right.id
    top.cc[1], top.cs[1] = agg_total(root)
    top.cc[2], top.cs[2] = agg_total(right)
    t.root = top.id
  end
end

-- -- delete ------------------------------------------------------------------------------

local function agg_max_item(t, node)
  while not node.leaf do node = agg_loadw(t, node.c[#node.c]) end
  return node.k[#node.k], node.s[#node.s]
end

local function agg_summarise(t, node, j)
  node.cc[j], node.cs[j] = agg_total(agg_loadw(t, node.c[j]))
end

local function agg_merge(t, node, j)
  local left, right = agg_loadw(t, node.c[j]), agg_loadw(t, node.c[j + 1])
  left.k[#left.k + 1] = node.k[j]
  left.s[#left.s + 1] = node.s[j]
  for i = 1, #right.k do
    left.k[#left.k + 1] = right.k[i]
    left.s[#left.s + 1] = right.s[i]
  end
  if not left.leaf then
    for i = 1, #right.c do
      left.c[#left.c + 1] = right.c[i]
      left.cc[#left.cc + 1] = right.cc[i]
      left.cs[#left.cs + 1] = right.cs[i]
    end
  end
  tremove(node.k, j)
  tremove(node.s, j)
  tremove(node.c, j + 1)
  tremove(node.cc, j + 1)
  tremove(node.cs, j + 1)
  t.gone[right.id] = true
  t.cache[right.id] = nil
  agg_touch(t, left)
  agg_summarise(t, node, j)
end

local function agg_rebalance(t, node, i, removed)
  local child = agg_loadw(t, node.c[i])
  local half = t.M / 2
  if #child.k >= half then -- O(1) summary update: one item of sum `removed` left
    node.cc[i] = node.cc[i] - 1
    local cs = node.cs[i] - removed
    if cs - cs ~= 0 then node.cc[i], cs = agg_total(child) end
    node.cs[i] = cs
    return
  end
  local left = i > 1 and agg_loadw(t, node.c[i - 1]) or nil
  local right = i <= #node.k and agg_loadw(t, node.c[i + 1]) or nil
  if left and #left.k > half then -- rotate right
    tinsert(child.k, 1, node.k[i - 1])
    tinsert(child.s, 1, node.s[i - 1])
    node.k[i - 1] = tremove(left.k)
    node.s[i - 1] = tremove(left.s)
    if not child.leaf then
      tinsert(child.c, 1, tremove(left.c))
      tinsert(child.cc, 1, tremove(left.cc))
      tinsert(child.cs, 1, tremove(left.cs))
    end
    agg_touch(t, left)
    agg_touch(t, child)
    agg_summarise(t, node, i - 1)
    agg_summarise(t, node, i)
  elseif right and #right.k > half then -- rotate left
    child.k[#child.k + 1] = node.k[i]
    child.s[#child.s + 1] = node.s[i]
    node.k[i] = tremove(right.k, 1)
    node.s[i] = tremove(right.s, 1)
    if not child.leaf then
      child.c[#child.c + 1] = tremove(right.c, 1)
      child.cc[#child.cc + 1] = tremove(right.cc, 1)
      child.cs[#child.cs + 1] = tremove(right.cs, 1)
    end
    agg_touch(t, right)
    agg_touch(t, child)
    agg_summarise(t, node, i)
    agg_summarise(t, node, i + 1)
  elseif left then
    agg_merge(t, node, i - 1)
  else
    agg_merge(t, node, i)
  end
end

local function agg_delete_from(t, node, pos)
  local i, eq = agg_search(node.k, pos)
  if node.leaf then
    if not eq then agg_fail("DELETE_MISSING_KEY", "key not found") end
    tremove(node.k, i)
    local s = tremove(node.s, i)
    agg_touch(t, node)
    return s
  end
  local removed, from_child
  if eq then -- swap in the predecessor, then delete it from child i
    removed = node.s[i]
    local pk, ps = agg_max_item(t, agg_loadw(t, node.c[i]))
    node.k[i], node.s[i] = pk, ps
    from_child = agg_delete_from(t, agg_loadw(t, node.c[i]), pk)
  else
    removed = agg_delete_from(t, agg_loadw(t, node.c[i]), pos)
    from_child = removed
  end
  agg_rebalance(t, node, i, from_child)
  agg_touch(t, node)
  return removed
end

-- Delete pos; returns its sum, or nil when absent and if_exists.
local function agg_delete(t, pos, if_exists)
  if t.root == "" then
    if if_exists then return nil end
    agg_fail("DELETE_MISSING_KEY", "key not found")
  end
  local root = agg_loadw(t, t.root)
  local ok, res = pcall(agg_delete_from, t, root, pos)
  if not ok then
    if if_exists and type(res) == "table" and res.code == "DELETE_MISSING_KEY" then return nil end
    error(res, 0)
  end
  if #root.k == 0 and not root.leaf then -- collapse: the only child becomes the root
    t.root = root.c[1]
    t.gone[root.id] = true
    t.cache[root.id] = nil
  end
  return res
end

-- -- reads: range count/sum, at, page --------------------------------------------------------

-- (count, sum) of the items strictly between lo and hi (nil = unbounded) under node.
local function agg_range_in(t, node, lo, hi, want_sum)
  local n = agg_n(node)
  local i0, i1 = 1, n
  if lo then
    local i, eq = agg_find(node, lo)
    i0 = eq and i + 1 or i
  end
  if hi then i1 = agg_find(node, hi) - 1 end
  local c, s = 0, 0
  if i1 >= i0 then
    c = i1 - i0 + 1
    if want_sum then
      local sums = agg_sums(node)
      for j = i0, i1 do s = s + sums[j] end
    end
  end
  if node.leaf then return c, s end
  if i0 > i1 then return agg_range_in(t, agg_load(t, agg_child(node, i0)), lo, hi, want_sum) end
  -- whole children: i0+1..i1, plus i0 without lo and i1+1 without hi
  local first, last = lo and i0 + 1 or i0, hi and i1 or i1 + 1
  if last >= first then
    c = c + agg_cum(node, last) - agg_cum(node, first - 1)
    if want_sum then
      local cs = agg_csums(node)
      for j = first, last do s = s + cs[j] end
    end
  end
  local ec, es
  if lo then
    ec, es = agg_range_in(t, agg_load(t, agg_child(node, i0)), lo, nil, want_sum)
    c, s = c + ec, s + es
  end
  if hi then
    ec, es = agg_range_in(t, agg_load(t, agg_child(node, i1 + 1)), nil, hi, want_sum)
    c, s = c + ec, s + es
  end
  return c, s
end

local function agg_range(t, lo, hi, want_sum)
  if t.root == "" then return 0, 0 end
  if lo == nil and hi == nil then return t.count, t.sum end
  if lo and hi and agg_cmp(lo, hi) >= 0 then return 0, 0 end
  return agg_range_in(t, agg_load(t, t.root), lo, hi, want_sum)
end

-- The item of 0-based rank r in the whole tree: per level, a binary search over the
-- cumulative child counts (child j and separator j hold ranks cum(j-1)+j-1 ..).
local function agg_select(t, r)
  local node = agg_load(t, t.root)
  while not node.leaf do
    -- the first j whose separator rank cum(j) + j - 1 is >= r (n + 1 if none)
    local n = agg_n(node)
    local lo, hi = 1, n + 1
    while lo < hi do
      local mid = floor((lo + hi) / 2)
      if agg_cum(node, mid) + mid - 1 >= r then hi = mid else lo = mid + 1 end
    end
    local before = agg_cum(node, lo - 1) + lo - 1 -- ranks before child lo
    if lo <= n and r == agg_cum(node, lo) + lo - 1 then
      return agg_key(node, lo), agg_sums(node)[lo]
    end
    if r < before then agg_fail("AGG_CORRUPT", "rank beyond the tree") end
    r = r - before
    node = agg_load(t, agg_child(node, lo))
  end
  if r >= agg_n(node) then agg_fail("AGG_CORRUPT", "rank beyond the tree") end
  return agg_key(node, r + 1), agg_sums(node)[r + 1]
end

-- The item at offset (negative = from the end) among the items between lo and hi.
local function agg_at(t, offset, lo, hi)
  if t.root == "" then agg_fail("AGG_OUT_OF_RANGE", "tree is empty") end
  local before = 0
  if lo then before = agg_range(t, nil, lo, false) end
  local upto = t.count
  if hi then upto = agg_range(t, nil, hi, false) end
  local n = upto - before
  if n < 0 then n = 0 end
  if offset < 0 then
    if -offset > n then
      agg_fail("AGG_OUT_OF_RANGE", sformat("negative offset exceeded count by %d", -offset - n))
    end
    offset = n + offset
  elseif offset >= n then
    agg_fail("AGG_OUT_OF_RANGE", sformat("offset exceeded count by %d", offset - n + 1))
  end
  return agg_select(t, before + offset)
end

-- Append up to `want` items strictly between lo and hi under node to out (pos, sum
-- pairs), in ascending order or descending when desc. Returns true when full.
local function agg_collect(t, node, lo, hi, desc, out, want)
  agg_sums(node)
  agg_kids(node)
  local n = #node.k
  local i0, i1 = 1, n
  if lo then
    local i, eq = agg_search(node.k, lo)
    i0 = eq and i + 1 or i
  end
  if hi then i1 = agg_search(node.k, hi) - 1 end
  local leaf = node.leaf
  if not desc then
    -- children i0..i1+1 and items i0..i1, interleaved
    for j = i0, i1 + 1 do
      if not leaf and j <= n + 1 then
        local clo = (j == i0) and lo or nil
        local chi = (j == i1 + 1) and hi or nil
        if agg_collect(t, agg_load(t, node.c[j]), clo, chi, desc, out, want) then return true end
      end
      if j <= i1 then
        out[#out + 1] = node.k[j]
        out[#out + 1] = node.s[j]
        if #out >= 2 * want then return true end
      end
    end
  else
    for j = i1 + 1, i0, -1 do
      if j <= i1 then
        out[#out + 1] = node.k[j]
        out[#out + 1] = node.s[j]
        if #out >= 2 * want then return true end
      end
      if not leaf then
        local clo = (j == i0) and lo or nil
        local chi = (j == i1 + 1) and hi or nil
        if agg_collect(t, agg_load(t, node.c[j]), clo, chi, desc, out, want) then return true end
      end
    end
  end
  return false
end

-- A page after the exclusive cursor: {cursor, done, pos1, sum1, ...} (sums "%.17g").
local function agg_page(t, lo, hi, desc, limit)
  local out = {}
  if t.root ~= "" and not (lo and hi and agg_cmp(lo, hi) >= 0) then
    agg_collect(t, agg_load(t, t.root), lo, hi, desc, out, limit + 1)
  end
  local done = #out <= 2 * limit
  local reply = { "", done and "1" or "0" }
  local n = done and #out or 2 * limit
  for i = 1, n, 2 do
    reply[#reply + 1] = out[i]
    reply[#reply + 1] = sformat("%.17g", out[i + 1])
  end
  if not done then reply[1] = out[n - 1] end
  return reply
end

-- Sum of pos, or nil when absent.
local function agg_get(t, pos)
  if t.root == "" then return nil end
  local node = agg_load(t, t.root)
  while true do
    local i, eq = agg_find(node, pos)
    if eq then return agg_sums(node)[i] end
    if node.leaf then return nil end
    node = agg_load(t, agg_child(node, i))
  end
end

-- "" means unbounded.
local function agg_opt(arg)
  if arg == nil or arg == "" then return nil end
  return arg
end
