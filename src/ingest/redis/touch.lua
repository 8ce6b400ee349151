-- Touch the entries this consumer is working on, so they do not look idle to XAUTOCLAIM.
-- KEYS[1] = calls stream; ARGV[1] = group, ARGV[2] = consumer, ARGV[3..] = entry ids.
-- Only entries still pending with this consumer are touched: one another consumer reclaimed
-- (this one was cut off from Redis for longer than the idle time) stays theirs. An entry no
-- longer pending at all was acknowledged meanwhile (its outcome was recorded while the touch
-- was on its way): nothing to touch, and nothing lost.
-- Returns how many are pending with another consumer now.
local lost = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 then
    if p[1][2] == ARGV[2] then
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    else
      lost = lost + 1
    end
  end
end
return lost
