-- load: the workflow, its in-progress step numbers and a page of its journal.
-- KEYS[1] W, KEYS[2] W:ip. ARGV: from, max, then step numbers to pick.
-- Reply: {} when missing, else {meta (flat), in-progress numbers, entries from..,
-- picked entries}.
if redis.call("EXISTS", KEYS[1]) == 0 then
  return {}
end
local meta = redis.call("HGETALL", KEYS[1])
local ip = redis.call("SMEMBERS", KEYS[2])
local steps = tonumber(redis.call("HGET", KEYS[1], "steps"))
local from = tonumber(ARGV[1])
local last = math.min(steps, from + tonumber(ARGV[2])) - 1
local entries = {}
for n = from, last do
  entries[#entries + 1] = redis.call("HGETALL", wf_skey(KEYS[1], n))
end
local picked = {}
for i = 3, #ARGV do
  picked[#picked + 1] = redis.call("HGETALL", wf_skey(KEYS[1], ARGV[i]))
end
return {meta, ip, entries, picked}
