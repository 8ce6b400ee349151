-- Remove an identity's bindings by id (ARGV[1] = 'id', ARGV[2] = binding id) or by token
-- (ARGV[1] = 'token', ARGV[2] = credential, ARGV[3] = device token).
-- KEYS[1] bindings hash, KEYS[2] updated zset.
-- Returns the JSON of every binding removed, so the caller can release their device keys.
local removed = {}
local function drop(bid, json)
  redis.call('HDEL', KEYS[1], bid)
  redis.call('ZREM', KEYS[2], bid)
  table.insert(removed, json)
end
if ARGV[1] == 'id' then
  local json = redis.call('HGET', KEYS[1], ARGV[2])
  if json then drop(ARGV[2], json) end
else
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local ok, b = pcall(cjson.decode, all[i + 1])
    if ok and type(b) == 'table' and b.credential == ARGV[2] and b.device_token == ARGV[3] then
      drop(all[i], all[i + 1])
    end
  end
end
return removed
