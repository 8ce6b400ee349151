-- Compare-and-delete a device key: delete it only while it still names ARGV[1]
-- ("<identity>\n<binding_id>"), so a token that moved on meanwhile keeps its new owner.
-- KEYS[1] device key. Returns 1 when deleted.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
