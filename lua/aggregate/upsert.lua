-- upsert: put the item of `id` at a new position in one step (insert_or_replace):
-- the position the by-id index holds for `id` (if any) is deleted, an item already at
-- the new position is taken over, the new one inserted and indexed.
-- KEYS T:m, T:n, T:i
-- ARGV: default M, default lazy, now, ns, notify, id, new pos, sum,
--   keep: "last" always writes; "min" / "max" write only when the new key is lower /
--   higher than the indexed one (a best-score board), else nothing changes.
-- Reply: {written "1"/"0", previous pos|"", previous sum|"", created "2"/"1"} (when
-- not written, "previous" is the item kept).
local t = agg_open(KEYS[1], KEYS[2])
local created = not t.exists
return agg_run(function()
  local id, pos, keep = ARGV[6], ARGV[7], ARGV[9]
  local prev = redis.call("HGET", KEYS[3], id) or nil -- false (no field) -> nil
  local prev_sum = nil
  if prev and keep ~= "last" then
    local c = agg_cmp(pos, prev)
    if (keep == "min" and c >= 0) or (keep == "max" and c <= 0) then
      local cur = agg_get(t, prev)
      if cur ~= nil then return {"0", prev, string.format("%.17g", cur), "1"} end
    end
  end
  if prev then
    prev_sum = agg_delete(t, prev, true)
    if prev_sum == nil then prev = nil end -- a stale pointer: nothing to replace
  end
  local here = agg_delete(t, pos, true) -- an item written without its id: taken over
  if prev == nil and here ~= nil then prev, prev_sum = pos, here end
  agg_ensure(t, ARGV[1], ARGV[2], ARGV[3], ARGV[4])
  agg_insert(t, pos, tonumber(ARGV[8]))
  redis.call("HSET", KEYS[3], id, pos)
  agg_commit(t, ARGV[5])
  local ps = ""
  if prev_sum ~= nil then ps = string.format("%.17g", prev_sum) end
  return {"1", prev or "", ps, created and "2" or "1"}
end)
