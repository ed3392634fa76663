-- user_probe: one user's record in this room, for list_user.
-- ARGV 5 user. Reply: {ended, on, ld} or {ended} when the user has no record.
local P = pr_init()
pr_expire(P, nil)
local rec = pr_get(P, ARGV[5])
if not rec then return pr_reply(P) end
return pr_reply(P, tostring(rec.on), rec.ld)
