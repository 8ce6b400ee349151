-- Store the APNs environment Apple accepted a device's token in, on the identity's binding of
-- (credential, device token), unless the binding already names one.
-- KEYS[1] bindings hash, KEYS[2] updated zset (unused; the same slot).
-- ARGV[1] credential, ARGV[2] device token, ARGV[3] 'production' or 'sandbox'.
-- The JSON is edited as text (the fields go in front) so Lua never re-encodes its numbers.
-- Returns 1 when stored, 0 otherwise.
if ARGV[3] ~= 'production' and ARGV[3] ~= 'sandbox' then return 0 end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local json = all[i + 1]
  local ok, b = pcall(cjson.decode, json)
  if ok and type(b) == 'table' and b.credential == ARGV[1] and b.device_token == ARGV[2]
    and b.environment == nil and string.sub(json, 1, 1) == '{' then
    local fields = '{"environment":"' .. ARGV[3] .. '","environment_learned":true,'
    redis.call('HSET', KEYS[1], all[i], fields .. string.sub(json, 2))
    return 1
  end
end
return 0
