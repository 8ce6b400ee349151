-- Add a calls-stream entry unless one of its idempotency markers exists; set them all with it.
-- KEYS[1] calls stream, KEYS[2..] markers; ARGV[1] marker ttl (ms), ARGV[2] MAXLEN ~,
-- ARGV[3..] field, value, ... Returns the new entry's id, or nil when a marker was set.
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return nil
  end
end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], '1', 'PX', ARGV[1])
end
local args = {KEYS[1], 'MAXLEN', '~', ARGV[2], '*'}
for i = 3, #ARGV do
  args[#args + 1] = ARGV[i]
end
return redis.call('XADD', unpack(args))
