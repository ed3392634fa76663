-- batch_result: record the outcome of a batch attempt.
-- ARGV: now, batch_id, attempt, mode, then
--   sent: id, resend_id pairs      -> emails still queued become sent; parked events
--                                     under their resend ids are applied (R2)
--   failed / cancelled: message    -> emails still queued become failed / cancelled
--   retry: (nothing)               -> the batch waits for its next attempt
-- Reply: {"OK", {email_id, event json}...} (callbacks owed for replayed events) | {"NOOP"}
local D = KEYS[1]
local NOW = rk_now(ARGV[1])
local bid, attempt, mode = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local bk = D .. ":b:" .. bid
local b = redis.call("HMGET", bk, "state", "attempts", "ids")
if not b[1] or b[1] ~= "inflight" or tonumber(b[2]) ~= attempt then
  if mode ~= "cancelled" or not b[1] then
    return {"NOOP"}
  end
end
if mode == "retry" then
  redis.call("HSET", bk, "state", "pending")
  redis.call("ZADD", D .. ":batches", rk_fmt(NOW), bid)
  return {"OK", {}}
end
local out = {}
local function still_queued(id)
  local s = redis.call("HMGET", D .. ":e:" .. id, "status", "batch_id")
  return s[1] == "queued" and s[2] == bid
end
if mode == "sent" then
  -- per email one read and one write; the indexes in one call each per batch
  local sent, scored, rids = {}, {}, {}
  for i = 5, #ARGV, 2 do
    local id, rid = ARGV[i], ARGV[i + 1]
    local ek = D .. ":e:" .. id
    local s = redis.call("HMGET", ek, "status", "batch_id", "created_ms")
    if s[1] == "queued" and s[2] == bid then
      redis.call("HSET", ek, "status", "sent", "resend_id", rid)
      sent[#sent + 1] = id
      scored[#scored + 1] = s[3] or "0"
      scored[#scored + 1] = id
      rids[#rids + 1] = rid
      rids[#rids + 1] = id
    end
  end
  if #sent > 0 then
    redis.call("ZREM", D .. ":st:queued", unpack(sent))
    redis.call("ZADD", D .. ":st:sent", unpack(scored))
    redis.call("HSET", D .. ":rid", unpack(rids))
    if rs_orphans_pending(D, NOW) then
      for k, id in ipairs(sent) do
        rs_take_parked(D, id, rids[2 * k - 1], NOW, out)
      end
    end
  end
else
  local final = mode == "failed" and "failed" or "cancelled"
  for _, id in ipairs(cjson.decode(b[3])) do
    if still_queued(id) then
      redis.call("HSET", D .. ":e:" .. id, "error_message", ARGV[5])
      rs_set_status(D, id, "queued", final)
      rs_finalize(D, id, NOW)
    end
  end
end
redis.call("DEL", bk)
redis.call("ZREM", D .. ":batches", bid)
return {"OK", out}
