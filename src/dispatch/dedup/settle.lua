-- Settle claims of one call. KEYS[1] = <p>sent:{<call_sid>}; ARGV = pairs of device key and
-- "sent" | "release". Nothing is written once the hash has expired: a late settle must not
-- leave a hash without an expiry behind.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
for i = 1, #ARGV, 2 do
  if ARGV[i + 1] == 'sent' then
    redis.call('HSET', KEYS[1], ARGV[i], 'sent')
  else
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return 1
