-- reannounce: look at the arq jobs of attempts that were dispatched long ago and not
-- begun. Per job: still queued -> left alone ("Q"); job lost (expired, queue flushed)
-- or dropped from the queue -> written again under the same id ("E"); taken by a
-- worker (in-progress key) that never began it -> "H" (the caller gives the attempt
-- a new token). So a backlog never grows: at most one live job per attempt.
-- KEYS: queue, then per job: job key, in-progress key. ARGV: score_ms, expires_ms,
-- payloads... Reply: one status letter per job.
local out = {}
for i = 2, #KEYS, 2 do
  local job_id = string.sub(KEYS[i], 9)
  if redis.call("EXISTS", KEYS[i]) == 1 then
    if redis.call("EXISTS", KEYS[i + 1]) == 1 then
      out[#out + 1] = "H"
    else
      if redis.call("ZSCORE", KEYS[1], job_id) == false then
        redis.call("ZADD", KEYS[1], ARGV[1], job_id)
      end
      out[#out + 1] = "Q"
    end
  else
    redis.call("PSETEX", KEYS[i], ARGV[2], ARGV[2 + i / 2])
    redis.call("ZADD", KEYS[1], ARGV[1], job_id)
    out[#out + 1] = "E"
  end
end
return out
