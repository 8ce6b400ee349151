-- Record the outcomes of events of one shard and acknowledge their entries: each entry's result,
-- dead letter and acknowledgement together, one entry after the other.
-- KEYS: calls stream, results stream, dead-letter stream.
-- ARGV: group, results MAXLEN, dead MAXLEN, then per entry: entry id, number of result
-- arguments (0 when results are off), number of dead-letter arguments (0 when there is none),
-- the result's field/value pairs, the dead letter's.
-- Returns per entry 1 when recorded, 0 when the entry was no longer pending: another consumer
-- recorded its outcome already, and a second one must not be written.
local out = {}
local i = 4
while i <= #ARGV do
  local id = ARGV[i]
  local n_result = tonumber(ARGV[i + 1])
  local n_dead = tonumber(ARGV[i + 2])
  local first = i + 3
  i = first + n_result + n_dead
  if #redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1) == 0 then
    out[#out + 1] = 0
  else
    -- The fields straight from ARGV, no table built per entry.
    if n_result > 0 then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
        unpack(ARGV, first, first + n_result - 1))
    end
    if n_dead > 0 then
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*',
        unpack(ARGV, first + n_result, first + n_result + n_dead - 1))
    end
    -- Last: if an XADD fails, this entry (and those after it) stay pending and are finished
    -- again later; the ones before it are acknowledged and answer 0 the next time.
    redis.call('XACK', KEYS[1], ARGV[1], id)
    out[#out + 1] = 1
  end
end
return out
