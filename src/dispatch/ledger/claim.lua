-- Claim devices for one call. KEYS[1] = <p>sent:{<call_sid>}; ARGV[1] = how long the claims
-- must live, in ms; ARGV[2] = the claimer's value (sending|since|instance|entry|consumer); then
-- pairs of device key and the stale value to take over ('' = claim only a free device).
-- Returns, per device, "fresh" when the claimer holds it now, else the value found.
local out = {}
for i = 3, #ARGV, 2 do
  local device, stale = ARGV[i], ARGV[i + 1]
  local current = redis.call('HGET', KEYS[1], device)
  if not current or (stale ~= '' and current == stale) then
    redis.call('HSET', KEYS[1], device, ARGV[2])
    out[#out + 1] = 'fresh'
  else
    out[#out + 1] = current
  end
end
-- Only ever lengthen the life of the hash: a replay with a shorter deadline must not cut short
-- the claims of an earlier, longer one.
local want = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < want then
  redis.call('PEXPIRE', KEYS[1], want)
end
return out
