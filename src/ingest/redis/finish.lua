-- Record the outcomes of events of one shard and acknowledge their entries: each entry's dead
-- letter, result and acknowledgement together, one entry after the other.
-- KEYS: calls stream, results stream, dead-letter stream.
-- ARGV: group, results MAXLEN, dead MAXLEN, then per entry: entry id, number of result
-- arguments (0 when results are off), number of dead-letter arguments (0 when there is none),
-- the result's field/value pairs, the dead letter's.
-- Returns per entry 1 when recorded, 0 when the entry was no longer pending: another consumer
-- recorded its outcome already, and a second one must not be written.
--
-- A script that fails stops where it is and keeps what it wrote (scripts have no rollback), so
-- the order makes a failure leave every entry either finished or untouched:
-- - what could refuse a write is checked first, before anything is written: a stream written
--   to that is another type of key (WRONGTYPE), an ACL that refuses the user XADD on it;
-- - an entry with a dead letter is checked pending first, then its dead letter goes (the
--   write an entry's own fields could make fail), then the result, then the XACK: the entry
--   whose write fails has nothing written, the ones before it are finished, the ones after it
--   untouched;
-- - an entry with a result alone (the common case) is acknowledged first, on Redis 7.0 and
--   later (which have the permission check), and XACK's answer is its pending check (one
--   command fewer than XPENDING + XACK). Its result cannot fail after that: its fields are the
--   few short ones callpush writes, the checks above ran, and once a script has written, Redis
--   no longer refuses its writes for memory (maxmemory), a read-only replica or a disk error
--   (script.c, scriptVerifyOOM and scriptVerifyWriteCommandAllow: "we can't stop in the
--   middle"). XACK is such a write.
local writes = {[2] = false, [3] = false}
local i = 4
while i <= #ARGV do
  local n_result = tonumber(ARGV[i + 1])
  local n_dead = tonumber(ARGV[i + 2])
  writes[2] = writes[2] or n_result > 0
  writes[3] = writes[3] or n_dead > 0
  i = i + 3 + n_result + n_dead
end
for k, written in pairs(writes) do
  if written then
    local kind = redis.call('TYPE', KEYS[k]).ok
    if kind ~= 'stream' and kind ~= 'none' then
      return redis.error_reply('WRONGTYPE ' .. KEYS[k] .. ' holds a ' .. kind .. ', not a stream')
    end
    if redis.acl_check_cmd and not redis.acl_check_cmd('XADD', KEYS[k], '*', 'f', 'v') then
      return redis.error_reply('NOPERM this user has no permission to XADD to ' .. KEYS[k])
    end
  end
end
-- Acknowledging first needs the permission check above, which came with Redis 7.0: an older
-- server keeps the pending check first for every entry.
local ack_first = redis.acl_check_cmd ~= nil
local out = {}
i = 4
while i <= #ARGV do
  local id = ARGV[i]
  local n_result = tonumber(ARGV[i + 1])
  local n_dead = tonumber(ARGV[i + 2])
  local first = i + 3
  i = first + n_result + n_dead
  if n_dead == 0 and ack_first then
    if redis.call('XACK', KEYS[1], ARGV[1], id) == 0 then
      out[#out + 1] = 0
    else
      if n_result > 0 then
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, first, i - 1))
      end
      out[#out + 1] = 1
    end
  elseif #redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1) == 0 then
    out[#out + 1] = 0
  else
    -- The fields straight from ARGV, no table built per entry.
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*',
      unpack(ARGV, first + n_result, i - 1))
    if n_result > 0 then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
        unpack(ARGV, first, first + n_result - 1))
    end
    redis.call('XACK', KEYS[1], ARGV[1], id)
    out[#out + 1] = 1
  end
end
return out
