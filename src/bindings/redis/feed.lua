-- The binding feed (SPEC §11), prepended to every script that changes a binding so the change
-- and its feed event are one Redis step. The script's caller passes, as the last KEYS entry,
-- the feed stream itself (one server) or the outbox in the identity's slot (a cluster: the
-- stream lives in another slot; see outbox.rs), and three trailing ARGV: the time (RFC 3339),
-- the stream's approximate cap, and 'inline' or 'outbox'. Events added to an outbox come back
-- in the reply as {entry id, fields} for the caller to forward to the feed.
local FEED_KEY = nil
local FEED_AT, FEED_MAXLEN = ARGV[#ARGV - 2], ARGV[#ARGV - 1]
local FEED_OUTBOX = ARGV[#ARGV] == 'outbox'
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
  if FEED_OUTBOX then
    local id = redis.call('XADD', FEED_KEY, '*', unpack(fields))
    table.insert(FEED, {id, fields})
  else
    redis.call('XADD', FEED_KEY, 'MAXLEN', '~', FEED_MAXLEN, '*', unpack(fields))
  end
end
