-- Stripe mirror helpers (spec stripe.md §7). Every row script has this layout:
--   KEYS[1] P:seq (STRING, insertion ranks)   KEYS[2] the row HASH
--   ARGV[1] P, the data prefix "rkit:{<ns>:stripe:<instance>}:s"
-- Other keys of the instance (indexes, other rows) are built from P and share its
-- hash tag, so each script stays in one Cluster slot.
-- Field values travel as a JSON object of strings; false means "remove the field".

local SK_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

-- unpadded base64url of a byte string (index keys hold user values encoded)
local function sk_b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = string.byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = { math.floor(n / 262144) % 64, math.floor(n / 4096) % 64,
                math.floor(n / 64) % 64, n % 64 }
    local keep = 4
    if b == nil then keep = 2 elseif c == nil then keep = 3 end
    for j = 1, keep do
      out[#out + 1] = string.sub(SK_B64, q[j] + 1, q[j] + 1)
    end
  end
  return table.concat(out)
end

-- which row fields are indexed, per table: field -> index name
local SK_INDEXES = {
  cus = { email = "cus:email", user_id = "cus:user" },
  sub = { cus = "sub:cus", org_id = "sub:org", user_id = "sub:user" },
  cs = { cus = "cs:cus" },
  pay = { cus = "pay:cus", org_id = "pay:org", user_id = "pay:user" },
  inv = { cus = "inv:cus", sub = "inv:sub", org_id = "inv:org", user_id = "inv:user" },
}

local function sk_ix(P, name, value)
  return P .. ":ix:" .. name .. ":" .. sk_b64(value)
end

-- the row as a table (empty when missing)
local function sk_row(key)
  local flat = redis.call("HGETALL", key)
  local t = {}
  for i = 1, #flat, 2 do
    t[flat[i]] = flat[i + 1]
  end
  return t
end

local function sk_empty(v)
  return v == nil or v == false or v == ""
end

-- Write `new` (field -> string | false) over `cur`: assigns the insertion rank to
-- a new row, moves the row between index sets whose field changed (an empty value
-- is not indexed) and sets/removes the fields. Returns the row's rank.
local function sk_commit(P, tbl, key, id, cur, new)
  local rank = cur.rank
  if rank == nil then
    rank = redis.call("INCR", KEYS[1])
    new.rank = tostring(rank)
    new.id = id
  end
  local sets, dels = {}, {}
  for f, v in pairs(new) do
    if v == false then
      if cur[f] ~= nil then dels[#dels + 1] = f end
    elseif cur[f] ~= v then
      sets[#sets + 1] = f
      sets[#sets + 1] = v
    end
  end
  for f, name in pairs(SK_INDEXES[tbl]) do
    local v = new[f]
    if v ~= nil then
      local old = cur[f]
      if v == false then v = nil end
      if old ~= v then
        if not sk_empty(old) then redis.call("ZREM", sk_ix(P, name, old), id) end
        if not sk_empty(v) then redis.call("ZADD", sk_ix(P, name, v), rank, id) end
      end
    end
  end
  if #sets > 0 then redis.call("HSET", key, unpack(sets)) end
  if #dels > 0 then redis.call("HDEL", key, unpack(dels)) end
  return rank
end

-- The generic upsert of customers, subscriptions and checkout sessions.
--   policy: "upsert" | "insert" (only when missing, else EXISTS) | "never" (only
--   when present, else MISSING)
--   wm: the event's `created` (seconds) or nil: a row whose watermark is newer
--   is STALE (no change); applying raises the watermark to max(wm, row.wm)
--   set: fields written always; ins: only when inserting; fill: only where the
--   row has no value
local function sk_apply(P, tbl, id, policy, wm, set, ins, fill)
  local key = KEYS[2]
  local cur = sk_row(key)
  local exists = cur.rank ~= nil
  if not exists and policy == "never" then return "MISSING" end
  if exists and policy == "insert" then return "EXISTS" end
  if exists and wm ~= nil and cur.wm ~= nil and wm < tonumber(cur.wm) then
    return "STALE"
  end
  local new = {}
  for f, v in pairs(set) do new[f] = v end
  if not exists then
    for f, v in pairs(ins) do
      if new[f] == nil then new[f] = v end
    end
  end
  for f, v in pairs(fill) do
    if new[f] == nil and sk_empty(cur[f]) then new[f] = v end
  end
  if wm ~= nil then
    local w = wm
    if cur.wm ~= nil and tonumber(cur.wm) > w then w = tonumber(cur.wm) end
    new.wm = rk_fmt(w)
  end
  sk_commit(P, tbl, key, id, cur, new)
  if exists then return "UPDATED" end
  return "INSERTED"
end

-- invoice status ranks (spec §4.3): draft 0, open 1, paid/uncollectible/void 2
local SK_RANKS = { draft = 0, open = 1, paid = 2, uncollectible = 2, void = 2 }

local function sk_status_rank(s)
  return SK_RANKS[s or ""] or 0
end
