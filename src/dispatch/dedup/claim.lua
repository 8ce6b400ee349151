-- Claim devices for one call. KEYS[1] = <p>sent:{<call_sid>}; ARGV[1] = how long the claims
-- must live, in ms; ARGV[2..] = device keys. Returns, per device, "fresh" when this call
-- claimed it now (stored as "sending"), else the state an earlier attempt left.
local out = {}
for i = 2, #ARGV do
  if redis.call('HSETNX', KEYS[1], ARGV[i], 'sending') == 1 then
    out[#out + 1] = 'fresh'
  else
    out[#out + 1] = redis.call('HGET', KEYS[1], ARGV[i])
  end
end
-- Only ever lengthen the life of the hash: a replay with a shorter deadline must not cut short
-- the claims of an earlier, longer one.
local want = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < want then
  redis.call('PEXPIRE', KEYS[1], want)
end
return out
