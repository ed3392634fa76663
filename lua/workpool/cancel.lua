-- cancel: ARGV now, opts, mode ("flag" | "finish", see cancel_one), then ids.
-- Reply: {replies, events}; reply per id "CANCELED" | "FLAGGED" | "NOOP"
local out = {}
for i = 4, #ARGV do
  out[#out + 1] = cancel_one(ARGV[i], ARGV[3])
end
return {out, EV}
