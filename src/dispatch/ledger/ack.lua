-- A device's ack of a call (SPEC §11). KEYS[1] = <p>sent:{<call_sid>}; ARGV[1] = the device
-- key, ARGV[2] = now (ms), ARGV[3] = '1' to record the ack, '0' only to look. The hash is gone once the call is over (its deadline plus the claim
-- margin): no ack then. Returns {'no'} when the device's push was not accepted for the call,
-- {'again'} for a device that acked before, else {'first', <stored sent value>}.
local sent = redis.call('HGET', KEYS[1], ARGV[1])
if not sent or string.sub(sent, 1, 4) ~= 'sent' then
  return {'no'}
end
local field = 'ack:' .. ARGV[1]
if ARGV[3] ~= '1' then
  if redis.call('HEXISTS', KEYS[1], field) == 1 then return {'again'} end
elseif redis.call('HSETNX', KEYS[1], field, ARGV[2]) == 0 then
  return {'again'}
end
return {'first', sent}
