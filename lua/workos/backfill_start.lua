-- Start or resume the backfill (single flight).
-- KEYS: 1 backfill   ARGV: 1 now, 2 P, 3 new work id, 4 stale work id ("" = none)
-- Returns {"STARTED"|"RESUMED"|"BUSY", work id of the running job}. A ``running``
-- record whose job is known to be over (``stale`` equals its work id: the job was
-- lost) is taken over as RESUMED.
local now = rk_now(ARGV[1])
local h = redis.call("HMGET", KEYS[1], "state", "work_id")
if not h[1] then
  redis.call("HSET", KEYS[1], "state", "running", "cursor", "", "pages", 0, "inserted", 0,
    "error", "", "started_at", rk_fmt(now), "work_id", ARGV[3])
  return {"STARTED", ARGV[3]}
end
if h[1] == "failed" or (ARGV[4] ~= "" and h[2] == ARGV[4]) then
  redis.call("HSET", KEYS[1], "state", "running", "error", "", "work_id", ARGV[3])
  return {"RESUMED", ARGV[3]}
end
return {"BUSY", h[2] or ""}
