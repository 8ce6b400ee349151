-- Read one page of the dead-letter stream and filter it inside Redis, so a listing of a
-- million entries moves only what it shows over the network. Read-only.
-- KEYS: dead-letter stream.
-- ARGV: start, end (XRANGE bounds), page size, want (how many matches to return in full),
-- reason, to, call_sid ('' matches anything).
-- Returns {last id read ('' when none), entries read, full matches ({id, fields} each, at most
-- want), counts of the other matches ({reason, n, ...}), {id, failed_at} of the first and of the
-- last of the other matches ({} when none)}.
local page = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', tonumber(ARGV[3]))
local want = tonumber(ARGV[4])
local wanted = {reason = ARGV[5], to = ARGV[6], call_sid = ARGV[7]}
local full, counts, order = {}, {}, {}
local first, last = {}, {}
for _, entry in ipairs(page) do
  local fields = entry[2]
  local seen = {}
  for i = 1, #fields, 2 do
    local k = fields[i]
    if wanted[k] ~= nil and seen[k] == nil then
      seen[k] = fields[i + 1]
    end
  end
  local match = true
  for k, v in pairs(wanted) do
    if v ~= '' and seen[k] ~= v then
      match = false
    end
  end
  if match then
    if #full < want then
      full[#full + 1] = entry
    else
      local reason = seen.reason or 'unknown'
      if counts[reason] == nil then
        counts[reason] = 0
        order[#order + 1] = reason
      end
      counts[reason] = counts[reason] + 1
      local failed_at = ''
      for i = 1, #fields, 2 do
        if fields[i] == 'failed_at' then
          failed_at = fields[i + 1]
          break
        end
      end
      last = {entry[1], failed_at}
      if #first == 0 then
        first = last
      end
    end
  end
end
local flat = {}
for _, reason in ipairs(order) do
  flat[#flat + 1] = reason
  flat[#flat + 1] = counts[reason]
end
local last_read = ''
if #page > 0 then
  last_read = page[#page][1]
end
return {last_read, #page, full, flat, first, last}
