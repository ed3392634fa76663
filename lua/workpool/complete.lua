-- complete: the fenced report of one attempt, then dispatch into the freed slot.
-- ARGV: now, opts, id, token, kind, payload, non_retryable, rand, chain_worker|"",
-- claim_limit, traceback|"" (of a failure, bounded by the caller).
-- Reply: {outcome, claimed, events}; outcome {"STALE"} | {"RETRY", due, delay}
-- | {"DONE"} | {"DONE", on_complete, context, kind} (the caller delivers the callback now)
-- | {"REPLAYED"} (this report was already applied: its reply was lost and the worker
-- sent it again; with the callback still owed to it, {"DONE", on_complete, context,
-- kind} again so that it delivers now, not after the callback lease)
local id, token = ARGV[3], ARGV[4]
local wk = wkey(id)
local st = redis.call("HMGET", wk, "state", "token", "reported")
if (st[1] ~= "running" and st[1] ~= "dispatched") or st[2] ~= token then
  if st[3] == token then
    local r = redis.call("HMGET", wk, "on_complete", "context", "result_kind", "oc_attempts")
    if st[1] == "finished" and r[1] and r[1] ~= "" and r[4] == "1"
        and redis.call("ZSCORE", K_OUTBOX, id) then
      return {{"DONE", r[1], r[2] or "", r[3]}, {}, EV}
    end
    return {{"REPLAYED"}, {}, EV}
  end
  emit("WARN", "stale_report", {work_id = id, token = token, state = st[1] or "missing"})
  return {{"STALE"}, {}, EV}
end
redis.call("HSET", wk, "reported", token)
local outcome = finish_attempt(id, wk, ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]), true,
  ARGV[11])
local chain = ARGV[9]
if chain == "" then
  chain = nil
end
return {outcome, dispatch(tonumber(ARGV[10]), chain), EV}
