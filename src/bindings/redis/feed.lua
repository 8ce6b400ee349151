-- The binding feed (SPEC §11), prepended to every script that changes a binding so the change
-- and its feed event are one Redis step. The script's caller passes the feed stream as the last
-- KEYS entry (the standalone layout) or none (a cluster: the stream lives in another slot, so
-- the events come back in the reply and the caller adds them), and two trailing ARGV: the time
-- (RFC 3339) and the stream's approximate cap.
local FEED_KEY = nil
local FEED_AT, FEED_MAXLEN = ARGV[#ARGV - 1], ARGV[#ARGV]
local FEED = {}
local function feed_key(n) if #KEYS > n then FEED_KEY = KEYS[#KEYS] end end
local function note(event, b, reason, to)
  local fields = {'event', event, 'binding_id', tostring(b.binding_id or ''),
    'identity', tostring(b.identity or ''), 'platform', tostring(b.platform or ''),
    'credential', tostring(b.credential or ''), 'device_token', tostring(b.device_token or ''),
    'reason', reason or '', 'at', FEED_AT}
  if to then
    table.insert(fields, 'to')
    table.insert(fields, to)
  end
  if FEED_KEY then
    redis.call('XADD', FEED_KEY, 'MAXLEN', '~', FEED_MAXLEN, '*', unpack(fields))
  else
    table.insert(FEED, fields)
  end
end
