-- failure: record a failed on_complete callback (a capped stream).
-- KEYS[1] the failures stream. ARGV: now, wid, gen, result kind, error
return redis.call("XADD", KEYS[1], "MAXLEN", "~", 10000, "*", "at", ARGV[1], "workflow_id",
  ARGV[2], "gen", ARGV[3], "result", ARGV[4], "error", ARGV[5])
