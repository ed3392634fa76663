-- index: the listing indexes of a namespace's workflows (their own slot; written
-- after the authoritative per-workflow script, idempotent).
-- KEYS[1] seq, KEYS[2] all, KEYS[3] running, KEYS[4] by-name, KEYS[5] finished (by
-- finish time, for retention). ARGV: op, wid, now
-- add: a new workflow (creation sequence number as score); the reply is the number.
-- run: (re)list as running. done: finished (its on_complete met). remove: forget it.
local op, wid = ARGV[1], ARGV[2]
if op == "add" then
  local s = redis.call("INCR", KEYS[1])
  redis.call("ZADD", KEYS[2], s, wid)
  redis.call("ZADD", KEYS[4], s, wid)
  redis.call("ZADD", KEYS[3], rk_now(ARGV[3]), wid)
  return s
elseif op == "run" then
  redis.call("ZADD", KEYS[3], rk_now(ARGV[3]), wid)
  redis.call("ZREM", KEYS[5], wid)
elseif op == "done" then
  redis.call("ZREM", KEYS[3], wid)
  redis.call("ZADD", KEYS[5], rk_now(ARGV[3]), wid)
elseif op == "remove" then
  redis.call("ZREM", KEYS[2], wid)
  redis.call("ZREM", KEYS[3], wid)
  redis.call("ZREM", KEYS[4], wid)
  redis.call("ZREM", KEYS[5], wid)
end
return 0
