-- Record one event's outcome and acknowledge its entry, all or nothing.
-- KEYS: calls stream, results stream, dead-letter stream.
-- ARGV: group, entry id, results MAXLEN, dead MAXLEN, number of result arguments (0 when results
-- are off), the result's field/value pairs, then the dead letter's (none when there is none).
-- Returns 1 when recorded, 0 when the entry was no longer pending: another consumer recorded
-- its outcome already, and a second one must not be written.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 then
  return 0
end
local n_result = tonumber(ARGV[5])
if n_result > 0 then
  local cmd = {'XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*'}
  for i = 6, 5 + n_result do
    cmd[#cmd + 1] = ARGV[i]
  end
  redis.call(unpack(cmd))
end
if #ARGV > 5 + n_result then
  local cmd = {'XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*'}
  for i = 6 + n_result, #ARGV do
    cmd[#cmd + 1] = ARGV[i]
  end
  redis.call(unpack(cmd))
end
-- Last: if an XADD fails, the entry stays pending and is finished again later.
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return 1
