-- Add a calls-stream entry unless its idempotency marker exists; set the marker with it.
-- KEYS[1] marker, KEYS[2] calls stream; ARGV[1] marker ttl (ms), ARGV[2] MAXLEN ~,
-- ARGV[3..] field, value, ... Returns the new entry's id, or nil when the marker was set.
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return nil
end
local args = {KEYS[2], 'MAXLEN', '~', ARGV[2], '*'}
for i = 3, #ARGV do
  args[#args + 1] = ARGV[i]
end
return redis.call('XADD', unpack(args))
