-- clear: drop every item and start an empty tree; settings not given keep the old
-- tree's (or the defaults for a new tree). The node hash and the by-id index are
-- UNLINKed (O(1) here, freed by Redis in the background). KEYS T:m, T:n, T:i
-- ARGV: M or "" (keep), lazy or "" (keep), now, ns, notify, default M, default lazy
-- Reply: 2 when the tree did not exist before, else 1.
local t = agg_open(KEYS[1], KEYS[2])
local created = not t.exists
agg_ensure(t, ARGV[6], ARGV[7], ARGV[3], ARGV[4])
if ARGV[1] ~= "" then t.M = tonumber(ARGV[1]) end
if ARGV[2] ~= "" then t.lazy = ARGV[2] end
redis.call("UNLINK", KEYS[2], KEYS[3])
t.root, t.next, t.changed = "", 0, true
agg_commit(t, ARGV[5])
return created and 2 or 1
