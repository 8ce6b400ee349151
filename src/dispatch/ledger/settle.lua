-- Settle claims of one call. KEYS[1] = <p>sent:{<call_sid>}; ARGV[1] = the settler's claim
-- value; then pairs of device key and "sent|<entry id>" | "release". A release deletes only a claim that
-- is still the settler's (another attempt may have taken a stale one over). Nothing is written
-- once the hash has expired: a late settle must not leave a hash without an expiry behind.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
for i = 2, #ARGV, 2 do
  if string.sub(ARGV[i + 1], 1, 4) == 'sent' then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  elseif redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return 1
