-- get: one cron by id or by name (one consistent read), with its history.
-- ARGV: now, id, name, history (1/0). Reply: {} | {id, fields (flat), history}
local id = ARGV[2]
if ARGV[3] ~= "" then
  id = redis.call("HGET", K_NAMES, ARGV[3])
  if id == false then
    return {}
  end
end
local fields = redis.call("HGETALL", jkey(id))
if #fields == 0 then
  return {}
end
local hist = {}
if ARGV[4] == "1" then
  hist = redis.call("LRANGE", hkey(id), 0, -1)
end
return {id, fields, hist}
