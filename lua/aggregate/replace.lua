-- replace: delete the old position and insert the new one, possibly into another
-- tree of the same slot, in one step. KEYS old T:m, T:n, new T:m, T:n
-- (the same pair when the namespace is unchanged).
-- ARGV: default M, default lazy, now, new ns, notify, old pos, new pos, sum,
--       mode ("strict": old must exist; "or_insert": delete old if present;
--       "upsert": like or_insert, and an existing new position is overwritten)
-- Reply: 2 when the new tree was created, else 1. On any failure nothing changes.
local old = agg_open(KEYS[1], KEYS[2])
local new = old
if KEYS[3] ~= KEYS[1] then new = agg_open(KEYS[3], KEYS[4]) end
local created = not new.exists
return agg_run(function()
  agg_delete(old, ARGV[6], ARGV[9] ~= "strict")
  if ARGV[9] == "upsert" then agg_delete(new, ARGV[7], true) end
  agg_ensure(new, ARGV[1], ARGV[2], ARGV[3], ARGV[4])
  agg_insert(new, ARGV[7], tonumber(ARGV[8]))
  agg_commit(old, ARGV[5])
  if new ~= old then agg_commit(new, ARGV[5]) end
  return created and 2 or 1
end)
