-- Remove one binding by id only if it still holds the device token (register step 3, prune,
-- and the clean-up of bindings whose token moved away).
-- KEYS[1] bindings hash, KEYS[2] updated zset.
-- ARGV[1] binding id, ARGV[2] credential, ARGV[3] device token,
-- ARGV[4] judged_at (ms): keep the binding when it was updated after it ('' = no check).
-- Returns 1 when removed, 0 otherwise.
local json = redis.call('HGET', KEYS[1], ARGV[1])
if not json then return 0 end
local ok, b = pcall(cjson.decode, json)
if ok and type(b) == 'table' then
  if b.credential ~= ARGV[2] or b.device_token ~= ARGV[3] then return 0 end
  local updated = tonumber(b.updated_at_ms)
  if ARGV[4] ~= '' and updated and updated > tonumber(ARGV[4]) then return 0 end
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
