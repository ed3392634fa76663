-- Insert one page of listed users: only users not stored and not tombstoned at or
-- after their updated_at; never updates a stored user. Inserted ids go to the
-- pending set (their user.created handler call is still owed) and the cursor moves.
-- KEYS: 1 backfill, 2 pending, 3 seq
-- ARGV: 1 now, 2 P, 3 work id, 4 next cursor ("" = last page), then per user:
--       uid, E(uid), user JSON, upd ms, E(external id) or ""
-- Returns the inserted ids in page order, or {"STALE"} when the backfill is not
-- running under ``work id`` (finished, failed, or taken over).
local P = ARGV[2]
local h = redis.call("HMGET", KEYS[1], "state", "work_id")
if h[1] ~= "running" or h[2] ~= ARGV[3] then
  return {"STALE"}
end
local inserted = {}
for i = 5, #ARGV, 5 do
  local uid, enc, json, upd, ext = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]),
    ARGV[i + 4]
  local ukey = P .. ":u:" .. enc
  local tomb = tonumber(redis.call("GET", P .. ":tomb:" .. enc) or "")
  if redis.call("EXISTS", ukey) == 0 and (tomb == nil or upd > tomb) then
    wo_insert(P, ukey, KEYS[3], uid, json, upd, ext)
    redis.call("SADD", KEYS[2], uid)
    inserted[#inserted + 1] = uid
  end
end
redis.call("HSET", KEYS[1], "cursor", ARGV[4])
redis.call("HINCRBY", KEYS[1], "pages", 1)
redis.call("HINCRBY", KEYS[1], "inserted", #inserted)
return inserted
