-- register: create a cron (the only script that creates a cron hash).
-- KEYS: 1-6 (see _lib), 7 = the cron hash. ARGV: now, id, name ("" = none),
-- fields (JSON object of strings), next_run, if_absent (1/0).
-- Reply: {"OK", id} | {"NAME_TAKEN", existing id} | {"EXISTS", id}
local id, name = ARGV[2], ARGV[3]
if name ~= "" then
  local existing = redis.call("HGET", K_NAMES, name)
  if existing then
    if ARGV[6] == "1" then
      return {"EXISTING", existing}
    end
    return {"NAME_TAKEN", existing}
  end
end
local jk = KEYS[7]
if redis.call("EXISTS", jk) == 1 then
  return {"EXISTS", id}
end
local flat = {}
for k, v in pairs(cjson.decode(ARGV[4])) do
  flat[#flat + 1] = k
  flat[#flat + 1] = v
end
redis.call("HSET", jk, "id", id, "name", name, "next_run", ARGV[5], "created_at", rk_fmt(NOW),
  "paused", "0", unpack(flat))
if name ~= "" then
  redis.call("HSET", K_NAMES, name, id)
end
redis.call("ZADD", K_ORDER, redis.call("INCR", K_SEQ), id)
redis.call("ZADD", K_DUE, ARGV[5], id)
stat("registered")
event("registered", {id = id, name = name, next_run = ARGV[5]})
return {"OK", id}
