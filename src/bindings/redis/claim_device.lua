-- Register step 1, on the device key only.
-- KEYS[1] device key; ARGV[1] identity, ARGV[2] fresh binding id, ARGV[3] ttl (ms).
-- Returns {binding_id, previous_owner, previous_binding_id}: the owner fields are empty when
-- the token already belonged to this identity (its binding id is kept) or to nobody.
local cur = redis.call('GET', KEYS[1])
local owner, bid = '', ''
if cur then
  local nl = string.find(cur, '\n', 1, true)
  if nl then
    owner = string.sub(cur, 1, nl - 1)
    bid = string.sub(cur, nl + 1)
  end
end
if owner == ARGV[1] and bid ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {bid, '', ''}
end
redis.call('SET', KEYS[1], ARGV[1] .. '\n' .. ARGV[2], 'PX', ARGV[3])
return {ARGV[2], owner, bid}
