-- One cell of a GCRA limiter shared by every daemon (dispatch/limits/cluster.rs).
-- KEYS[1]: the limiter's key (its theoretical arrival time, ms since the epoch, as text).
-- ARGV[1]: the emission interval in ms (may be fractional), ARGV[2]: the burst,
-- ARGV[3]: the longest the caller may wait for its cell, in ms (0: now or never).
-- Returns how long the caller waits for the cell it was given (0: at once), or -1: over the
-- limit, nothing taken. The clock is the server's, so daemons with skewed clocks agree.
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local wait = tat - (burst - 1) * interval - now
if wait < 0 then wait = 0 end
if wait > max_wait then return -1 end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1000)
return math.ceil(wait)
