-- Record the outcomes of events of one shard and acknowledge their entries: each entry's dead
-- letter, result and acknowledgement together, one entry after the other.
-- KEYS: calls stream, results stream, dead-letter stream, then the push ledger hashes of the
-- entries' `sent` marks (standalone Redis only: they are in other slots).
-- ARGV: group, results MAXLEN, dead MAXLEN, then per entry: entry id, number of result
-- arguments (0 when results are off), number of dead-letter arguments (0 when there is none),
-- number of `sent` mark arguments (0 when there is none), the result's field/value pairs, the
-- dead letter's, the mark's: the index of its hash in KEYS, the life in ms to give a hash
-- without an expiry, the device/value pairs.
-- Returns per entry 1 when recorded, 0 when the entry was no longer pending: another consumer
-- recorded its outcome already, and a second one must not be written; plus 2 when its mark was
-- not written because its key holds another type than a hash.
--
-- A `sent` mark is written before the pending check (the provider accepted the push, whoever
-- finishes the entry), with one HSET: the devices' claims are in the hash, so it adds no field.
-- When it did add one (the hash expired meanwhile), a hash left without an expiry gets the
-- given life, as the ledger's own mark does (`dispatch::ledger::redis::lean`): a `sent` mark
-- that outlives its call by a minute is harmless, a hash that never expires is not. A key of
-- another type is left alone and said so, not failed: the outcome is recorded all the same,
-- as when the ledger refuses a settlement on its own.
--
-- A script that fails stops where it is and keeps what it wrote (scripts have no rollback), so
-- the order makes a failure leave every entry either finished or untouched:
-- - the streams written to are checked first: one that is another type of key fails the call
--   (WRONGTYPE) before anything is written;
-- - per entry the dead letter goes first (the write an entry's own fields could make fail),
--   then the result, then the XACK: the entry whose write fails has nothing written, the ones
--   before it are finished (they answer 0 when tried again), the ones after it untouched;
-- - an entry's `sent` mark goes before all that: it is true whatever follows (a provider
--   accepted the push), and writing it again when the entry is tried again changes nothing.
local writes = {[2] = false, [3] = false}
local i = 4
while i <= #ARGV do
  local n_result = tonumber(ARGV[i + 1])
  local n_dead = tonumber(ARGV[i + 2])
  writes[2] = writes[2] or n_result > 0
  writes[3] = writes[3] or n_dead > 0
  i = i + 4 + n_result + n_dead + tonumber(ARGV[i + 3])
end
for k, written in pairs(writes) do
  if written then
    local kind = redis.call('TYPE', KEYS[k]).ok
    if kind ~= 'stream' and kind ~= 'none' then
      return redis.error_reply('WRONGTYPE ' .. KEYS[k] .. ' holds a ' .. kind .. ', not a stream')
    end
  end
end
local out = {}
i = 4
while i <= #ARGV do
  local id = ARGV[i]
  local n_result = tonumber(ARGV[i + 1])
  local n_dead = tonumber(ARGV[i + 2])
  local n_mark = tonumber(ARGV[i + 3])
  local first = i + 4
  i = first + n_result + n_dead + n_mark
  local refused = 0
  if n_mark > 0 then
    local m = first + n_result + n_dead
    local ledger = KEYS[tonumber(ARGV[m])]
    -- One call in the common case: the devices' claims are there, so HSET adds no field.
    local added = redis.pcall('HSET', ledger, unpack(ARGV, m + 2, m + n_mark - 1))
    if type(added) == 'table' then
      refused = 2
    elseif added > 0 and redis.call('PTTL', ledger) == -1 then
      redis.call('PEXPIRE', ledger, ARGV[m + 1])
    end
  end
  if #redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1) == 0 then
    out[#out + 1] = refused
  else
    -- The fields straight from ARGV, no table built per entry.
    if n_dead > 0 then
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*',
        unpack(ARGV, first + n_result, first + n_result + n_dead - 1))
    end
    if n_result > 0 then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
        unpack(ARGV, first, first + n_result - 1))
    end
    redis.call('XACK', KEYS[1], ARGV[1], id)
    out[#out + 1] = 1 + refused
  end
end
return out
