-- batch_begin: start attempt `attempt` of a batch (or re-run it after its worker died)
-- and read the API payloads of its emails still queued.
-- ARGV: now, batch_id, attempt. Reply: {"NOOP"} | {"EMPTY"} |
-- {"GO", attempts, endpoint, {id, payload json}...}
local D = KEYS[1]
local NOW = rk_now(ARGV[1])
local bid, attempt = ARGV[2], tonumber(ARGV[3])
local bk = D .. ":b:" .. bid
local b = redis.call("HMGET", bk, "state", "attempts", "ids", "endpoint")
if not b[1] then
  return {"NOOP"}
end
local attempts = tonumber(b[2])
if b[1] == "pending" and attempt == attempts + 1 then
  attempts = attempt
  redis.call("HSET", bk, "attempts", attempts, "state", "inflight")
elseif not (b[1] == "inflight" and attempt == attempts) then
  return {"NOOP"}
end
redis.call("ZADD", D .. ":batches", rk_fmt(NOW), bid)
local out = {}
for _, id in ipairs(cjson.decode(b[3])) do
  local row = redis.call("HMGET", D .. ":e:" .. id, "status", "batch_id", "p")
  if row[1] == "queued" and row[2] == bid then
    out[#out + 1] = {id, row[3]}
  end
end
if #out == 0 then
  redis.call("DEL", bk)
  redis.call("ZREM", D .. ":batches", bid)
  return {"EMPTY"}
end
return {"GO", attempts, b[4], out}
