-- delete_id: remove the item written by `id`. KEYS T:m, T:n, T:i
-- ARGV: notify, id, default M, default lazy
-- Reply: {pos, sum ("%.17g"), dropped "1"/"0"} or {} when the id has no item.
local t = agg_open(KEYS[1], KEYS[2])
return agg_run(function()
  local pos = redis.call("HGET", KEYS[3], ARGV[2])
  if not pos then return {} end
  local s = agg_delete(t, pos, true)
  redis.call("HDEL", KEYS[3], ARGV[2])
  if s == nil then return {} end -- a stale pointer (now forgotten)
  agg_commit(t, ARGV[1])
  local dropped = agg_drop_if_empty(t, KEYS[3], ARGV[3], ARGV[4])
  return {pos, string.format("%.17g", s), dropped and "1" or "0"}
end)
