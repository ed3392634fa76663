-- single-flight: who holds the lease of one key now. KEYS[1] lock.
-- Reply: {holder token|"", remaining lease ms}
return {redis.call("GET", KEYS[1]) or "", redis.call("PTTL", KEYS[1])}
