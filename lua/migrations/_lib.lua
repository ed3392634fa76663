-- migrations: shared helpers. KEYS[1] = the migration's state hash S,
-- KEYS[2] = S:failed (record-and-continue failures). ARGV[1] = now (or "").
-- Cursors travel as two ARGVs: a flag ("1" = a cursor string, "0" = null, i.e. the
-- beginning) and the string.

local function mg_drop_lease(S)
  redis.call("HDEL", S, "token", "lease", "executing", "cancel")
end

-- "1", cursor  |  "0", ""  (the stored cursor, absent = null)
local function mg_cursor(S)
  local c = redis.call("HGET", S, "cursor")
  if c then return "1", c end
  return "0", ""
end

local function mg_set_cursor(S, flag, value)
  if flag == "1" then
    redis.call("HSET", S, "cursor", value)
  else
    redis.call("HDEL", S, "cursor")
  end
end

local function mg_cursor_is(S, flag, value)
  local c = redis.call("HGET", S, "cursor")
  if flag == "1" then return c == value end
  return not c
end

-- the lease is live when a token is held and its deadline has not passed
local function mg_live(S, now)
  local tok = redis.call("HGET", S, "token")
  if not tok then return nil end
  local lease = tonumber(redis.call("HGET", S, "lease") or "0")
  if lease > now then return tok end
  return nil
end
