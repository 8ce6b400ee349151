-- Delete the consumers of the group that hold no pending entry and have been idle for at least
-- ARGV[3] ms, except ARGV[2] (the consumer running this), at most ARGV[4] of them.
-- KEYS[1] = calls stream; ARGV[1] = group, ARGV[2] = own consumer name, ARGV[3] = least idle
-- time (ms), ARGV[4] = most deletions. Returns the names deleted.
-- Checked and deleted in one script: no entry can be delivered to a consumer between the check
-- and XGROUP DELCONSUMER, which would drop that consumer's pending entries for good.
local deleted = {}
local least_idle = tonumber(ARGV[3])
local most = tonumber(ARGV[4])
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  if #deleted >= most then
    break
  end
  local info = {}
  for j = 1, #consumer, 2 do
    info[consumer[j]] = consumer[j + 1]
  end
  if info.name ~= ARGV[2] and info.pending == 0 and info.idle >= least_idle then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info.name)
    deleted[#deleted + 1] = info.name
  end
end
return deleted
