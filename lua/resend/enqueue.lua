-- enqueue: create a waiting email (or return the live one of its idempotency key) and
-- claim the scheduled batcher run. ARGV: now, id, idem key ("" = none), batch_delay_ms,
-- manual ("1": status queued, never batched), then field/value pairs of the record.
-- Reply: {id, is_new, must_schedule, now}
local D = KEYS[1]
local NOW = rk_now(ARGV[1])
local id, idem, delay, manual = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5] == "1"
if idem ~= "" then
  local existing = redis.call("GET", D .. ":idem:" .. idem)
  if existing then
    return {existing, 0, 0, rk_fmt(NOW)}
  end
end
local ek = D .. ":e:" .. id
if redis.call("EXISTS", ek) == 1 then
  return redis.error_reply("email id already exists: " .. id)
end
local seq = redis.call("INCR", D .. ":seq")
if #ARGV > 5 then
  redis.call("HSET", ek, unpack(ARGV, 6))
end
redis.call("HSET", ek, "created_ms", rk_fmt(NOW), "enqueued_ms", rk_fmt(NOW), "seq", seq,
  "bounced", "0", "complained", "0", "failed", "0", "delivery_delayed", "0",
  "opened", "0", "clicked", "0")
if idem ~= "" then
  redis.call("SET", D .. ":idem:" .. idem, id)
  redis.call("HSET", ek, "idem", idem)
end
redis.call("ZADD", D .. ":created", rk_fmt(NOW), id)
if manual then
  redis.call("HSET", ek, "manual", "1")
  rs_set_status(D, id, nil, "queued")
  return {id, 1, 0, rk_fmt(NOW)}
end
rs_set_status(D, id, nil, "waiting")
redis.call("ZADD", D .. ":waiting", seq, id)
return {id, 1, rs_claim_sched(D, NOW, delay) and 1 or 0, rk_fmt(NOW)}
