-- cleanup: delete a finished workflow (or, with force, a running one) with its
-- journal and events. KEYS[1] W, KEYS[2] W:ip. ARGV: force ("1")
-- Reply: {"ok", name, child ids...} or {"missing"|"running"}.
local w = KEYS[1]
local st = redis.call("HMGET", w, "state", "steps", "name")
if not st[1] then
  return {"missing"}
end
if st[1] == "running" and ARGV[1] ~= "1" then
  return {"running"}
end
local out = {"ok", st[3] or ""}
for n = 0, tonumber(st[2]) - 1 do
  local sk = wf_skey(w, n)
  local c = redis.call("HGET", sk, "child")
  if c and c ~= "" then
    out[#out + 1] = c
  end
  redis.call("UNLINK", sk)
end
for _, eid in ipairs(redis.call("SMEMBERS", w .. ":evs")) do
  local ek = wf_ekey(w, eid)
  local en = redis.call("HGET", ek, "ename")
  if en then
    redis.call("UNLINK", wf_lkey(w, en, "created"), wf_lkey(w, en, "sent"),
      wf_lkey(w, en, "waiting"))
  end
  redis.call("UNLINK", ek)
end
redis.call("UNLINK", w .. ":evs", KEYS[2], w)
return out
