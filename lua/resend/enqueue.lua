-- enqueue: create emails (status waiting, or queued for manual sends, never batched),
-- or return the live email of a caller idempotency key, and claim the scheduled
-- batcher run. Several concurrent send_email calls share one call (group commit).
-- ARGV: now, batch_delay_ms, n, then per email: id, idem key ("" = none), manual
-- ("1"/"0"), scheduled time in ms ("" = now: an email due later waits in
-- D:scheduled, not D:waiting), the number of record fields m, then m field, value
-- pairs.
-- Reply: {must_schedule, now, {id, is_new (1 new, 0 existing idem, -1 id taken),
-- due ms of a scheduled email or ""}...}
local D = KEYS[1]
local NOW = rk_now(ARGV[1])
local delay, n = tonumber(ARGV[2]), tonumber(ARGV[3])
local now_s = rk_fmt(NOW)
local out = {}
local batched = false
-- index entries, written with one call per index after the loop
local waiting, created, by_status = {}, {}, {waiting = {}, queued = {}}
local seq = tonumber(redis.call("GET", D .. ":seq") or "0")
local b = 4
for _ = 1, n do
  local id, idem, manual = ARGV[b], ARGV[b + 1], ARGV[b + 2] == "1"
  local at = tonumber(ARGV[b + 3])
  local m = tonumber(ARGV[b + 4])
  local first = b + 5
  b = first + 2 * m
  if at and at <= NOW then
    at = nil
  end
  local existing = idem ~= "" and redis.call("GET", D .. ":idem:" .. idem)
  local ek = D .. ":e:" .. id
  if existing then
    out[#out + 1] = {existing, 0, ""}
  elseif redis.call("EXISTS", ek) == 1 then
    out[#out + 1] = {id, -1, ""}
  else
    seq = seq + 1
    local f = {unpack(ARGV, first, first + 2 * m - 1)}
    local status = manual and "queued" or "waiting"
    -- flags (bounced, opened, ...) are absent until set: absent reads as false
    f[#f + 1] = "status"
    f[#f + 1] = status
    f[#f + 1] = "created_ms"
    f[#f + 1] = now_s
    if idem ~= "" then
      redis.call("SET", D .. ":idem:" .. idem, id)
      f[#f + 1] = "idem"
      f[#f + 1] = idem
    end
    if manual then
      f[#f + 1] = "manual"
      f[#f + 1] = "1"
    elseif at then
      f[#f + 1] = "scheduled_ms"
      f[#f + 1] = rk_fmt(at)
      redis.call("ZADD", D .. ":scheduled", rk_fmt(at), id)
    else
      waiting[#waiting + 1] = seq
      waiting[#waiting + 1] = id
      batched = true
    end
    redis.call("HSET", ek, unpack(f))
    created[#created + 1] = now_s
    created[#created + 1] = id
    local st = by_status[status]
    st[#st + 1] = now_s
    st[#st + 1] = id
    out[#out + 1] = {id, 1, at and rk_fmt(at) or ""}
  end
end
if #waiting > 0 then
  redis.call("ZADD", D .. ":waiting", unpack(waiting))
end
if #created > 0 then
  redis.call("ZADD", D .. ":created", unpack(created))
end
for status, st in pairs(by_status) do
  if #st > 0 then
    redis.call("ZADD", D .. ":st:" .. status, unpack(st))
  end
end
redis.call("SET", D .. ":seq", seq)
local must = batched and rs_claim_sched(D, NOW, delay)
return {must and 1 or 0, now_s, out}
