-- Remove one binding by id if it has expired by now, and say so on the feed: how an expiry is
-- noticed (on a lookup of the identity, see the module docs).
-- KEYS[1] bindings hash, KEYS[2] updated zset, KEYS[3] the binding feed or
-- the identity's outbox (feed.lua).
-- ARGV[1] binding id, ARGV[2] now (ms), ARGV[3]..ARGV[5]: the feed's time, cap and mode (feed.lua).
-- Returns {1 when removed, 0 otherwise; feed}.
feed_key(2)
local json = redis.call('HGET', KEYS[1], ARGV[1])
if not json then return {0, FEED} end
local ok, b = pcall(cjson.decode, json)
if not ok or type(b) ~= 'table' or tonumber(b.expires_at_ms) == nil
    or tonumber(b.expires_at_ms) > tonumber(ARGV[2]) then
  return {0, FEED}
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
note('expired', b, 'ttl')
return {1, FEED}
