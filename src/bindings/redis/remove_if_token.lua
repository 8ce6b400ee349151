-- Remove one binding by id only if it still holds the device token (register step 3, prune,
-- and the clean-up of bindings whose token moved away).
-- KEYS[1] bindings hash, KEYS[2] updated zset, KEYS[3] the binding feed or
-- the identity's outbox (feed.lua).
-- ARGV[1] binding id, ARGV[2] credential, ARGV[3] device token,
-- ARGV[4] judged_at (ms): keep the binding when it was updated after it ('' = no check),
-- ARGV[5] the feed event ('moved' or 'pruned'), ARGV[6] its reason, ARGV[7] the identity the
-- token moved to ('' = none), ARGV[8]..ARGV[10]: the feed's time, cap and mode (feed.lua).
-- Returns {1 when removed, 0 otherwise; feed}.
feed_key(2)
local json = redis.call('HGET', KEYS[1], ARGV[1])
if not json then return {0, FEED} end
local ok, b = pcall(cjson.decode, json)
if ok and type(b) == 'table' then
  if b.credential ~= ARGV[2] or b.device_token ~= ARGV[3] then return {0, FEED} end
  local updated = tonumber(b.updated_at_ms)
  if ARGV[4] ~= '' and updated and updated > tonumber(ARGV[4]) then return {0, FEED} end
else
  b = {binding_id = ARGV[1], credential = ARGV[2], device_token = ARGV[3]}
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local to = nil
if ARGV[7] ~= '' then to = ARGV[7] end
note(ARGV[5], b, ARGV[6], to)
return {1, FEED}
