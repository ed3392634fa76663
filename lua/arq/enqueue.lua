-- enqueue arq jobs in one round trip, as arq's enqueue_job would (same job format,
-- same de-duplication: skip when the job or its result exists).
-- KEYS: queue, then per job: job key, result key. ARGV: score_ms, expires_ms, payloads...
local n = 0
for i = 2, #KEYS, 2 do
  if redis.call("EXISTS", KEYS[i], KEYS[i + 1]) == 0 then
    redis.call("PSETEX", KEYS[i], ARGV[2], ARGV[2 + i / 2])
    redis.call("ZADD", KEYS[1], ARGV[1], string.sub(KEYS[i], 9))
    n = n + 1
  end
end
return n
