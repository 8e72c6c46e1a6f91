"""Lua for `RedisStreamsBus`: each script is one atomic step of the bus's contract."""

# XADD and queue the new id on the order list in one atomic step.
PUBLISH_ORDERED = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'data', ARGV[1])
redis.call('RPUSH', KEYS[2], id)
return id
"""

# KEYS: first stream, stream, order list, accepted marker, done marker, then the index's keys.
# ARGV: maxlen, ttl ('' for none), payload, marker ttl ('' for no de-duplication),
# only if idle ('1' or ''), index updates (JSON, see `_index_spec`), first payloads...
# An entry first in its order and not done before carries 'first' = '1': its first delivery
# may run without asking ADMIT (nothing can come before it, and only its own run completes it).
# A second call with the same marker returns the first call's ids and publishes nothing; it
# still writes (EXPIRE), so a WAITAOF after it also waits for the first call's write to be fsynced.
# Only if idle: 'busy' (nothing written) while the order list holds an unfinished entry.
PUBLISH_AFTER = """
if ARGV[4] ~= '' then
  local seen = redis.call('GET', KEYS[4])
  if seen then
    redis.call('EXPIRE', KEYS[4], ARGV[4])
    return cjson.decode(seen)
  end
end
local idle = redis.call('LLEN', KEYS[3]) == 0
if ARGV[5] == '1' and not idle then return 'busy' end
local ids = {}
for i = 7, #ARGV do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'data', ARGV[i])
end
if ARGV[2] ~= '' then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
local id
if idle and redis.call('EXISTS', KEYS[5]) == 0 then
  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'data', ARGV[3], 'first', '1')
else
  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'data', ARGV[3])
end
redis.call('RPUSH', KEYS[3], id)
ids[#ids + 1] = id
if ARGV[4] ~= '' then redis.call('SET', KEYS[4], cjson.encode(ids), 'EX', ARGV[4]) end
for _, update in ipairs(cjson.decode(ARGV[6])) do
  local key = KEYS[update.k]
  if update.member then
    redis.call('ZADD', key, update.score, update.member)
    redis.call('ZREMRANGEBYRANK', key, 0, -update.keep - 1)
  else
    for name, by in pairs(update.incr) do redis.call('HINCRBY', key, name, by) end
    for name, value in pairs(update.set) do redis.call('HSET', key, name, value) end
    for name, value in pairs(update.nx) do redis.call('HSETNX', key, name, value) end
  end
  if update.ttl then redis.call('EXPIRE', key, update.ttl) end
end
return ids
"""

# Who holds entry ARGV[i] of group ARGV[1]: {id, consumer, idle ms, deliveries} or nil.
HOLDER = """
local function holder(stream, group, id)
  local found = redis.call('XPENDING', stream, group, id, id, 1)
  return found[1]
end
"""

# KEYS: stream, order list, done key.
# ARGV: message id, group, consumer, max deliveries. -> 'lost' | 'done' | 'dead' | 'wait' | 'run'
ADMIT = (
    HOLDER
    + """
local held = holder(KEYS[1], ARGV[2], ARGV[1])
if not held or held[2] ~= ARGV[3] then return 'lost' end
if redis.call('EXISTS', KEYS[3]) == 1 then return 'done' end
if tonumber(held[4]) > tonumber(ARGV[4]) then return 'dead' end
local function earlier(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
-- The head of the order runs. A resumed run holds the head with a newer id than the messages
-- queued behind it, so membership counts, not only ids.
local queued = redis.call('LPOS', KEYS[2], ARGV[1])
while true do
  local head = redis.call('LINDEX', KEYS[2], 0)
  if not head or head == ARGV[1] then return 'run' end
  if not queued and not earlier(head, ARGV[1]) then return 'run' end
  if #redis.call('XRANGE', KEYS[1], head, head) > 0 then return 'wait' end
  redis.call('LREM', KEYS[2], 1, head) -- trimmed away before anyone ran it
end
"""
)

# Fenced completion. KEYS: stream, order list, done key, record key, due key, then one stream per
# publication. ARGV: group, message id, consumer, done ttl ('' for no marker), maxlen,
#       park ('1' or ''), record, record ttl, due score, due member,
#       then per publication: ttl ('' for none), entry count, entries...
# Ownership and the done marker are checked in the same script that publishes, so a stale
# worker (frozen past its lease, or retrying through an outage) can never publish twice.
# Parking (a run paused for approval) stores its record and keeps the conversation's turn:
# the entry stays on the order list until the resume that the last decision enqueues replaces it.
COMPLETE = (
    HOLDER
    + """
local held = holder(KEYS[1], ARGV[1], ARGV[2])
if not held or held[2] ~= ARGV[3] then
  if ARGV[4] ~= '' and redis.call('EXISTS', KEYS[3]) == 1 then return 'duplicate' end
  return 'lost'
end
local verdict = 'ok'
if ARGV[4] ~= '' and redis.call('EXISTS', KEYS[3]) == 1 then
  verdict = 'duplicate'
else
  local at = 11
  for k = 6, #KEYS do
    local ttl, n = ARGV[at], tonumber(ARGV[at + 1])
    for i = at + 2, at + 1 + n do
      redis.call('XADD', KEYS[k], 'MAXLEN', '~', ARGV[5], '*', 'data', ARGV[i])
    end
    if ttl ~= '' and n > 0 then redis.call('EXPIRE', KEYS[k], ttl) end
    at = at + 2 + n
  end
  if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[4]) end
  if ARGV[6] == '1' then
    redis.call('SET', KEYS[4], ARGV[7], 'EX', ARGV[8])
    redis.call('ZADD', KEYS[5], ARGV[9], ARGV[10])
  end
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if ARGV[6] ~= '1' then redis.call('LREM', KEYS[2], 1, ARGV[2]) end
return verdict
"""
)

# A decision on a paused run's call. KEYS: record, events stream, inbox, order list, due set.
# ARGV: call id, decision (JSON), resolved event, maxlen, events ttl ('' for none), due member.
# -> {'unknown'} | {'decided', earlier decision} | {'pending'} | {'resumed', resume inbox id}.
# The last decision enqueues the record's resume entry in the parked entry's place at the head
# of the conversation's order, so the run continues before anything sent meanwhile.
DECIDE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return {'unknown'} end
local record = cjson.decode(raw)
local known = false
for _, call in ipairs(record.calls) do
  if call.call_id == ARGV[1] then known = true end
end
if not known then return {'unknown'} end
local earlier = record.decisions[ARGV[1]]
if earlier then return {'decided', cjson.encode(earlier)} end
record.decisions[ARGV[1]] = cjson.decode(ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'data', ARGV[3])
if ARGV[5] ~= '' then redis.call('EXPIRE', KEYS[2], ARGV[5]) end
for _, call in ipairs(record.calls) do
  if not record.decisions[call.call_id] then
    redis.call('SET', KEYS[1], cjson.encode(record), 'KEEPTTL')
    return {'pending'}
  end
end
local resumed = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'data', record.resume)
local at = redis.call('LPOS', KEYS[4], record.inbox_id)
if at then redis.call('LSET', KEYS[4], at, resumed) else redis.call('LPUSH', KEYS[4], resumed) end
redis.call('ZREM', KEYS[5], ARGV[6])
record.resumed = resumed
redis.call('SET', KEYS[1], cjson.encode(record), 'KEEPTTL')
return {'resumed', resumed}
"""

# Renew (idle 0) or hand back (idle > 0) only entries this consumer still holds; XCLAIM alone
# would take an entry from whoever holds it now. JUSTID leaves the delivery count alone.
# KEYS: stream. ARGV: group, consumer, idle ms, ids... -> the ids this consumer no longer holds.
RENEW = (
    HOLDER
    + """
local lost = {}
for i = 4, #ARGV do
  local held = holder(KEYS[1], ARGV[1], ARGV[i])
  if held and held[2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""
)
