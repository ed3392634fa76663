-- enqueue: create emails (status waiting, or queued for manual sends, never batched),
-- or return the live email of a caller idempotency key, and claim the scheduled
-- batcher run. Several concurrent send_email calls share one call (group commit).
-- ARGV: now, batch_delay_ms, n, then per email: id, idem key ("" = none), manual
-- ("1"/"0"), the record's fields as a JSON array [field, value, ...], scheduled time
-- in ms ("" = now: an email due later waits in D:scheduled, not D:waiting).
-- Reply: {must_schedule, now, {id, is_new (1 new, 0 existing idem, -1 id taken),
-- due ms of a scheduled email or ""}...}
local D = KEYS[1]
local NOW = rk_now(ARGV[1])
local delay, n = tonumber(ARGV[2]), tonumber(ARGV[3])
local now_s = rk_fmt(NOW)
local out = {}
local batched = false
local seq = tonumber(redis.call("GET", D .. ":seq") or "0")
for k = 0, n - 1 do
  local b = 4 + k * 5
  local id, idem, manual = ARGV[b], ARGV[b + 1], ARGV[b + 2] == "1"
  local at = tonumber(ARGV[b + 4])
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
    local f = cjson.decode(ARGV[b + 3])
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
      redis.call("ZADD", D .. ":waiting", seq, id)
      batched = true
    end
    redis.call("HSET", ek, unpack(f))
    redis.call("ZADD", D .. ":created", now_s, id)
    redis.call("ZADD", D .. ":st:" .. status, now_s, id)
    out[#out + 1] = {id, 1, at and rk_fmt(at) or ""}
  end
end
redis.call("SET", D .. ":seq", seq)
local must = batched and rs_claim_sched(D, NOW, delay)
return {must and 1 or 0, now_s, out}
