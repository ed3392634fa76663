-- rotate_room_token: replace the room secret (old room tokens stop listing).
-- ARGV 5 new secret. Reply: {ended, new secret} or {ended} for an unknown room.
local P = pr_init()
if redis.call("HEXISTS", P.room, "token") == 0 then return pr_reply(P) end
redis.call("HSET", P.room, "token", ARGV[5])
return pr_reply(P, ARGV[5])
