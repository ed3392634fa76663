-- oc_ack: the callback was delivered; the work item retires.
-- ARGV: now, opts, id. Reply 1 (acknowledged) | 0 (not awaiting delivery)
local id = ARGV[3]
local wk = wkey(id)
if redis.call("ZREM", K_OUTBOX, id) == 0 or redis.call("EXISTS", wk) == 0 then
  return 0
end
retire(id, wk)
return 1
