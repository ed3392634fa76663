-- update_room_user: replace (or clear) the user's room data; no record, no write.
-- ARGV 5 user, 6 "1" set / "0" clear, 7 data JSON. Reply: {ended, "1"|"0"}
local P = pr_init()
pr_expire(P, nil)
local user = ARGV[5]
local rec = pr_get(P, user)
if not rec then return pr_reply(P, "0") end
if ARGV[6] == "1" then rec.d = ARGV[7] else rec.d = nil end
pr_put(P, user, rec)
pr_event(P, "update", user, P.now)
return pr_reply(P, "1")
