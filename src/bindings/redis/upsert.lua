-- Register step 2, on one identity's keys only.
-- KEYS[1] bindings hash, KEYS[2] updated zset, KEYS[3] the binding feed or
-- the identity's outbox (feed.lua).
-- ARGV[1] binding id, ARGV[2] credential, ARGV[3] device token, ARGV[4] now (ms),
-- ARGV[5] how long the identity's keys live (ms: the binding TTL plus the grace in which an
-- expiry is still noticed), ARGV[6] max bindings, ARGV[7] the binding's JSON without its opening
-- brace and created_at_ms (",\"binding_id\":…}"), so numbers are never re-encoded by Lua;
-- ARGV[8] '1' when the registration names no environment: a refresh keeps the stored one;
-- ARGV[9]..ARGV[11]: the feed's time, cap and mode (feed.lua).
-- Returns {created (1/0), created_at_ms, {evicted binding JSON…}, kept environment, feed}: the
-- kept environment is '', '<environment>' or '<environment> learned'; feed is the events an
-- outbox got, for the caller to forward (feed.lua).
feed_key(2)
local id, cred, token = ARGV[1], ARGV[2], ARGV[3]
local now = tonumber(ARGV[4])
local created_at, created = ARGV[4], 1
local kept, env_json = '', ''
local function known(e) return e == 'production' or e == 'sandbox' end

-- Drop expired and undecodable entries, and any other entry holding this token (left behind
-- when an earlier registration was interrupted), keeping created_at of a live same-id entry.
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local bid = all[i]
  local ok, b = pcall(cjson.decode, all[i + 1])
  local live = ok and type(b) == 'table' and tonumber(b.expires_at_ms) ~= nil
    and tonumber(b.expires_at_ms) > now
  local same_token = live and b.credential == cred and b.device_token == token
  if bid == id and same_token then
    created_at = string.format('%.0f', tonumber(b.created_at_ms) or now)
    created = 0
    if ARGV[8] == '1' and known(b.environment) then
      env_json = ',"environment":"' .. b.environment .. '"'
      kept = b.environment
      if b.environment_learned == true then
        env_json = env_json .. ',"environment_learned":true'
        kept = kept .. ' learned'
      end
    end
  elseif bid ~= id and (not live or same_token) then
    if ok and type(b) == 'table' then
      if live then note('unregistered', b, 'replaced') else note('expired', b, 'ttl') end
    end
    redis.call('HDEL', KEYS[1], bid)
    redis.call('ZREM', KEYS[2], bid)
  end
end

redis.call('HSET', KEYS[1], id, '{"created_at_ms":' .. created_at .. env_json .. ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[4], id)
local this = cjson.decode('{' .. string.sub(ARGV[7], 2))
if created == 1 then note('registered', this, '') else note('refreshed', this, '') end

-- Evict the least recently updated past the cap; never the binding just registered.
local evicted = {}
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[6])
if excess > 0 then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, excess)
  for _, bid in ipairs(oldest) do
    if excess <= 0 then break end
    if bid ~= id then
      local json = redis.call('HGET', KEYS[1], bid)
      if json then
        table.insert(evicted, json)
        local ok, b = pcall(cjson.decode, json)
        if ok and type(b) == 'table' then note('evicted', b, 'max_per_identity') end
      end
      redis.call('HDEL', KEYS[1], bid)
      redis.call('ZREM', KEYS[2], bid)
      excess = excess - 1
    end
  end
end

redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return {created, created_at, evicted, kept, FEED}
