-- bulk: many writes to one tree in one step, each dirty node written once
-- (the caller sorts and chunks the operations so one call stays short).
-- KEYS T:m, T:n
-- ARGV: default M, default lazy, now, ns, notify, then triples op, pos, sum with op
--   "i" insert | "d" delete | "x" delete if exists | "u" upsert (delete if exists + insert)
-- Reply: 2 when the tree was created, else 1. The first failing op aborts the whole
-- call (nothing written) with its error, suffixed " at op <index>".
local t = agg_open(KEYS[1], KEYS[2])
local created = not t.exists
return agg_run(function()
  local j = 0
  local ok, err = pcall(function()
    for i = 6, #ARGV, 3 do
      j = (i - 6) / 3
      local op, pos = ARGV[i], ARGV[i + 1]
      if op == "i" or op == "u" then
        agg_ensure(t, ARGV[1], ARGV[2], ARGV[3], ARGV[4])
        if op == "u" then agg_delete(t, pos, true) end
        agg_insert(t, pos, tonumber(ARGV[i + 2]))
      else
        agg_delete(t, pos, op == "x")
      end
    end
  end)
  if not ok then
    if type(err) == "table" and err.msg then err.msg = err.msg .. " at op " .. j end
    error(err, 0)
  end
  agg_commit(t, ARGV[5])
  return created and 2 or 1
end)
