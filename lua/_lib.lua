-- rkit shared Lua helpers (prepended to every script). Lua 5.1 + cjson only.

-- Non-integers leave scripts as %.17g strings: Redis truncates Lua numbers in
-- replies and tostring() keeps only 14 digits. Integers below 1e15 print the same
-- digits with the cheaper "%d" (not 0: %.17g keeps the sign of -0).
local function rk_fmt(x)
  if x % 1 == 0 and x < 1e15 and x > -1e15 and x ~= 0 then
    return string.format("%d", x)
  end
  return string.format("%.17g", x)
end

-- "now" in ms: the injected test clock (ARGV) or the Redis server's TIME.
local function rk_now(arg)
  if arg ~= nil and arg ~= "" then
    return tonumber(arg)
  end
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

local function rk_optnum(arg)
  if arg == nil or arg == "" then
    return nil
  end
  return tonumber(arg)
end
