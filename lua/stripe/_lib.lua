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

-- customer.subscription.created: insert if missing (wm set on insert), then give
-- the subscription's invoices the linkage they lack (even if the row existed)
local function sk_sub_created(P, id, wm, fields, user_id, org_id)
  local out = sk_apply(P, "sub", id, "insert", wm, fields, {}, {})
  local link = { user_id = user_id, org_id = org_id }
  if user_id ~= "" or org_id ~= "" then
    local ids = redis.call("ZRANGE", sk_ix(P, "inv:sub", id), 0, -1)
    for _, inv in ipairs(ids) do
      local key = P .. ":inv:" .. inv
      local cur = sk_row(key)
      if cur.rank ~= nil then
        local new = {}
        for f, v in pairs(link) do
          if v ~= "" and sk_empty(cur[f]) then new[f] = v end
        end
        if next(new) ~= nil then sk_commit(P, "inv", key, inv, cur, new) end
      end
    end
  end
  return out
end

-- Invoice upsert under the status ranking (spec §4.3), or payment_failed (draft
-- moves to open; no insert). f: cus, sub, status, amount_due, amount_paid,
-- created, metadata, user_id, org_id (upsert only)
local function sk_invoice(P, mode, id, f)
  local key = KEYS[2]
  local cur = sk_row(key)
  local exists = cur.rank ~= nil
  if mode == "payment_failed" then
    if not exists then return "MISSING" end
    if sk_status_rank(cur.status) < 1 then
      sk_commit(P, "inv", key, id, cur, { status = "open" })
      return "UPDATED"
    end
    return "UNCHANGED"
  end
  -- missing linkage is inherited from the subscription row
  if not sk_empty(f.sub) and (sk_empty(f.user_id) or sk_empty(f.org_id)) then
    local s = redis.call("HMGET", P .. ":sub:" .. f.sub, "user_id", "org_id")
    if sk_empty(f.user_id) and not sk_empty(s[1]) then f.user_id = s[1] end
    if sk_empty(f.org_id) and not sk_empty(s[2]) then f.org_id = s[2] end
  end
  local new = { cus = f.cus }
  if not sk_empty(f.sub) then new.sub = f.sub end
  local use = (not exists) or sk_status_rank(f.status) >= sk_status_rank(cur.status)
  if use then
    new.status = f.status
    new.amount_due = f.amount_due
    new.amount_paid = f.amount_paid
    new.created = f.created
    new.metadata = f.metadata
    if not sk_empty(f.user_id) then new.user_id = f.user_id end
    if not sk_empty(f.org_id) then new.org_id = f.org_id end
  end
  sk_commit(P, "inv", key, id, cur, new)
  if not exists then return "INSERTED" end
  if use then return "UPDATED" end
  return "KEPT"
end

-- PaymentIntent rows (spec §3.7, S4): "succeeded" inserts or marks succeeded,
-- "failed" inserts or updates a status that is not succeeded, both fill a missing
-- customer; "link_customer" only fills the customer of an existing row.
local function sk_payment(P, mode, id, f)
  local key = KEYS[2]
  local cur = sk_row(key)
  local new = {}
  if cur.rank == nil then
    if mode == "link_customer" then return "MISSING" end
    for k, v in pairs(f) do
      if not sk_empty(v) then new[k] = v end
    end
    sk_commit(P, "pay", key, id, cur, new)
    return "INSERTED"
  end
  if not sk_empty(f.cus) and sk_empty(cur.cus) then new.cus = f.cus end
  if mode == "succeeded" then
    new.status = "succeeded"
  elseif mode == "failed" and cur.status ~= "succeeded" then
    new.status = f.status
  end
  if next(new) == nil then return "UNCHANGED" end
  sk_commit(P, "pay", key, id, cur, new)
  return "UPDATED"
end

-- one default-sync operation, as planned by Python: a = {op=..., ...}
local function sk_op(P, id, a)
  if a.op == "row" then
    return sk_apply(P, a.table, id, a.policy, a.wm, a.set or {}, a.ins or {}, a.fill or {})
  elseif a.op == "sub_created" then
    return sk_sub_created(P, id, a.wm, a.fields, a.user_id or "", a.org_id or "")
  elseif a.op == "invoice" then
    return sk_invoice(P, a.mode, id, a.fields or {})
  elseif a.op == "payment" then
    return sk_payment(P, a.mode, id, a.fields or {})
  end
  return "NONE"
end

-- Claim a verified event (spec §7.4), in two steps so that a caller may do its
-- own work between the read-only check and the writes. c: key (P:evt:<id>), log
-- (P:events), bkey (P:evb:<id>), now, lease, type, created, body, retention,
-- logcap, id, ts, tolerance, keep (body retention).
-- sk_claim_check: a refusal reply ({"TOO_OLD", now} | {"DONE"} | {"BUSY", until})
-- or nil and the record's {state, lease_until, applied, token}
local function sk_claim_check(c)
  local now, key = c.now, c.key
  if c.tolerance > 0 and c.ts < now / 1000 - c.tolerance then
    return { "TOO_OLD", rk_fmt(now) }, nil
  end
  local rec = redis.call("HMGET", key, "state", "lease_until", "applied", "token")
  if rec[1] == "done" then
    redis.call("HINCRBY", key, "duplicates", 1)
    return { "DONE" }, nil
  end
  if rec[1] == "processing" and tonumber(rec[2]) > now then
    redis.call("HINCRBY", key, "duplicates", 1)
    return { "BUSY", rec[2] }, nil
  end
  return nil, rec
end

-- sk_claim_write: take the claim; returns {"CLAIMED", token, applied "1"/"0"}
local function sk_claim_write(c, rec)
  local now, key = c.now, c.key
  local token = (tonumber(rec[4]) or 0) + 1
  redis.call("HSET", key, "state", "processing", "lease_until", rk_fmt(now + c.lease),
    "token", token, "type", c.type, "created", c.created, "updated_at", rk_fmt(now))
  if rec[1] == false then
    redis.call("HSET", key, "received_at", rk_fmt(now), "applied", "0")
    if c.keep > 0 then
      redis.call("SET", c.bkey, c.body, "PX", math.ceil(math.min(c.keep, c.retention)))
    end
  end
  redis.call("PEXPIRE", key, math.ceil(c.retention))
  -- the dedupe log: bounded by retention and by count
  redis.call("ZADD", c.log, now, c.id)
  redis.call("ZREMRANGEBYSCORE", c.log, "-inf", "(" .. rk_fmt(now - c.retention))
  redis.call("ZREMRANGEBYRANK", c.log, 0, -c.logcap - 1)
  redis.call("PEXPIRE", c.log, math.ceil(c.retention))
  return { "CLAIMED", tostring(token), rec[3] or "0" }
end

-- the claim arguments shared by event_claim.lua and event_apply.lua
local function sk_claim_args(key, log, bkey, a, i)
  return {
    key = key, log = log, bkey = bkey, now = rk_now(a[i]), lease = tonumber(a[i + 1]),
    type = a[i + 2], created = a[i + 3], body = a[i + 4], retention = tonumber(a[i + 5]),
    logcap = tonumber(a[i + 6]), id = a[i + 7], ts = tonumber(a[i + 8]),
    tolerance = tonumber(a[i + 9]), keep = tonumber(a[i + 10]),
  }
end

local function sk_done(key, now, retention)
  redis.call("HSET", key, "state", "done", "applied", "1", "done_at", rk_fmt(now))
  redis.call("HDEL", key, "lease_until")
  redis.call("PEXPIRE", key, math.ceil(retention))
end
