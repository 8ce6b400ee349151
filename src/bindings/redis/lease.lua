-- Take, keep or give up a lease. KEYS[1] the lease key; ARGV[1] the holder, ARGV[2] its life
-- (ms; '0' gives it up if held by ARGV[1]).
-- Returns 1 when ARGV[1] holds it now (taken free, or kept and lengthened), else 0.
local cur = redis.call('GET', KEYS[1])
if ARGV[2] == '0' then
  if cur == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return 0
end
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
