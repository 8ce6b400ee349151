-- Remove an identity's bindings by id (ARGV[1] = 'id', ARGV[2] = binding id), by token
-- (ARGV[1] = 'token', ARGV[2] = credential, ARGV[3] = device token) or all of them
-- (ARGV[1] = 'all': an account's erasure); ARGV[4] the reason the feed names;
-- ARGV[5]..ARGV[7]: the feed's time, cap and mode (feed.lua).
-- KEYS[1] bindings hash, KEYS[2] updated zset, KEYS[3] the binding feed or
-- the identity's outbox (feed.lua).
-- Returns {the JSON of every binding removed, feed}, so the caller can release their device
-- keys (and forward the events an outbox holds, feed.lua).
feed_key(2)
local removed = {}
local function drop(bid, json)
  redis.call('HDEL', KEYS[1], bid)
  redis.call('ZREM', KEYS[2], bid)
  table.insert(removed, json)
  local ok, b = pcall(cjson.decode, json)
  if ok and type(b) == 'table' then note('unregistered', b, ARGV[4]) end
end
if ARGV[1] == 'id' then
  local json = redis.call('HGET', KEYS[1], ARGV[2])
  if json then drop(ARGV[2], json) end
else
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local ok, b = pcall(cjson.decode, all[i + 1])
    if ARGV[1] == 'all' or (ok and type(b) == 'table' and b.credential == ARGV[2]
        and b.device_token == ARGV[3]) then
      drop(all[i], all[i + 1])
    end
  end
end
return {removed, FEED}
