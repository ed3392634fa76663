-- replace: delete the old position and insert the new one, possibly into another
-- tree of the same slot, in one step. KEYS old T:m, T:n, T:i, new T:m, T:n, T:i
-- (the same triple when the namespace is unchanged).
-- ARGV: default M, default lazy, now, new ns, notify, old pos, new pos, sum,
--       mode ("strict": old must exist; "or_insert": delete old if present;
--       "upsert": like or_insert, and an existing new position is overwritten),
--       old id, new id
-- An item written by id keeps its place in the by-id index (at the new position).
-- Reply: {2 when the new tree was created else 1, "1" when the old tree was dropped
-- (left empty)}. On any failure nothing changes.
local old = agg_open(KEYS[1], KEYS[2])
local new = old
if KEYS[4] ~= KEYS[1] then new = agg_open(KEYS[4], KEYS[5]) end
local created = not new.exists
return agg_run(function()
  local removed = agg_delete(old, ARGV[6], ARGV[9] ~= "strict")
  local indexed = removed ~= nil and redis.call("HGET", KEYS[3], ARGV[10]) == ARGV[6]
  if ARGV[9] == "upsert" then agg_delete(new, ARGV[7], true) end
  agg_ensure(new, ARGV[1], ARGV[2], ARGV[3], ARGV[4])
  agg_insert(new, ARGV[7], tonumber(ARGV[8]))
  if indexed then
    redis.call("HDEL", KEYS[3], ARGV[10])
    redis.call("HSET", KEYS[6], ARGV[11], ARGV[7])
  end
  agg_commit(old, ARGV[5])
  local dropped = false
  if new ~= old then
    agg_commit(new, ARGV[5])
    dropped = agg_drop_if_empty(old, KEYS[3], ARGV[1], ARGV[2])
  end
  return {created and 2 or 1, dropped and "1" or "0"}
end)
