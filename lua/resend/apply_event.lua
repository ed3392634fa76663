-- apply_event (§7.6): dedupe on the svix id, resolve the resend id, park the event when
-- the id is not recorded yet (R2) or apply the §4.7 rules.
-- ARGV: now, svix_id, dedupe_ttl_ms, orphan_ttl_ms, type, created_at, resend_id,
-- message ("" = none), event json, orphan cap, the message's svix timestamp (ms),
-- tolerance (ms), callback wanted ("1"/"0").
-- Reply: {"STALE", "old"|"new"} (nothing written) | {"DUPLICATE", mark} | {"ORPHANED"} |
-- {"APPLIED", email_id}
-- The dedupe mark is "a:<email id>" (applied, callback not yet queued), "d" (done) or
-- "o" (parked).
local D = KEYS[1]
local NOW = rk_now(ARGV[1])
local sid, ttl, ottl = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local etype, created_at, rid, msg, raw = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local ts, tol = tonumber(ARGV[11]), tonumber(ARGV[12])
if ts < NOW - tol then
  return {"STALE", "old"}
elseif ts > NOW + tol then
  return {"STALE", "new"}
end
local wk = D .. ":wh:" .. sid
local mark = redis.call("GET", wk)
if mark then
  return {"DUPLICATE", mark}
end
local id = redis.call("HGET", D .. ":rid", rid)
if not id or redis.call("EXISTS", D .. ":e:" .. id) == 0 then
  local ok = D .. ":orphan:" .. rid
  redis.call("RPUSH", ok, cjson.encode({t = etype, c = created_at, m = msg, e = raw,
    x = NOW + ottl}))
  redis.call("LTRIM", ok, -tonumber(ARGV[10]), -1)
  redis.call("PEXPIRE", ok, ottl)
  redis.call("ZREMRANGEBYSCORE", D .. ":orphans", "-inf", "(" .. rk_fmt(NOW)) -- bounded
  redis.call("ZADD", D .. ":orphans", rk_fmt(NOW + ottl), rid)
  redis.call("SET", wk, "o", "PX", ttl)
  return {"ORPHANED"}
end
rs_apply(D, id, etype, created_at, rid, msg, NOW)
redis.call("SET", wk, ARGV[13] == "1" and ("a:" .. id) or "d", "PX", ttl)
return {"APPLIED", id}
