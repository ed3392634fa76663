-- Action cache helpers (spec action-cache.md). An entry is one hash:
--   v value JSON, a canonical args JSON, id entry id, c created-at ms, x expires-at ms
-- (x absent = no TTL). Logical expiry always compares x / c with the cache clock.

-- Is the stored entry fresh at now under an optional read TTL? (spec §4.2)
local function ac_fresh(c, x, now, read_ttl)
  local expires = x
  if read_ttl ~= nil then
    local bound = c + read_ttl
    if expires == nil or bound < expires then expires = bound end
  end
  return expires == nil or expires > now -- equal means stale
end

-- Append to `out` up to k members of the exp index whose expiry has passed (not
-- `skip`, the entry just written). Returns `out`.
local function ac_expired(out, exp, now, k, skip)
  if not k or k < 1 then return out end
  local base = #out
  local due = redis.call("ZRANGEBYSCORE", exp, "-inf", rk_fmt(now), "LIMIT", 0, k + 1)
  for _, m in ipairs(due) do
    if m ~= skip and #out < base + k then out[#out + 1] = m end
  end
  return out
end
