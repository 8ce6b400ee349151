-- Replay a batch of dead letters, each entry all or nothing.
-- KEYS: dead-letter stream, calls stream.
-- ARGV: calls MAXLEN, keep ('1': leave the dead letter), then per entry: its dead-letter id,
-- the number of field/value arguments that follow, those arguments (the event to add).
-- Returns one value per entry: the new calls-stream id, or '' when the dead letter no longer
-- exists (replayed or purged by someone else since it was read: it must not be added twice).
-- Scripts run without interleaving, so no other client sees an entry in both streams or in
-- neither; for each entry the XADD comes first, so an error leaves it untouched in the dead
-- stream.
local out = {}
local i = 3
while i <= #ARGV do
  local id = ARGV[i]
  local n = tonumber(ARGV[i + 1])
  if #redis.call('XRANGE', KEYS[1], id, id) == 0 then
    out[#out + 1] = ''
  else
    local cmd = {'XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*'}
    for j = i + 2, i + 1 + n do
      cmd[#cmd + 1] = ARGV[j]
    end
    out[#out + 1] = redis.call(unpack(cmd))
    if ARGV[2] ~= '1' then
      redis.call('XDEL', KEYS[1], id)
    end
  end
  i = i + 2 + n
end
return out
