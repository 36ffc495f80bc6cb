"""Lua scripts of the Redis event store; each runs atomically inside Redis.

They address keys beyond those declared in KEYS, so the store needs one Redis server (or a primary
with replicas), not Redis Cluster.
"""

# KEYS[1] remembers this batch chunk's results; the other keys come in pairs (unit totals, unit arms).
UPDATE_UNITS_ONCE = """
local done = redis.call('GET', KEYS[1])
if done then return cjson.decode(done) end
local ttl = ARGV[1]
local pos = 3
local out = {}
for i = 2, #KEYS, 2 do
  local totals, arms = KEYS[i], KEYS[i + 1]
  local arm, count = ARGV[pos], tonumber(ARGV[pos + 1])
  pos = pos + 2
  local created = redis.call('HSETNX', totals, '_', '1')
  local crossover = 0
  if created == 1 then
    redis.call('SADD', arms, arm)
    redis.call('PEXPIRE', arms, ttl)
    if redis.call('SCARD', arms) == 2 then crossover = 1 end
  end
  local values = {created, crossover}
  for j = 1, count do
    values[#values + 1] = redis.call('HINCRBYFLOAT', totals, ARGV[pos], ARGV[pos + 1])
    pos = pos + 2
  end
  redis.call('PEXPIRE', totals, ttl)
  out[#out + 1] = values
end
redis.call('SET', KEYS[1], cjson.encode(out), 'PX', ARGV[2])
return out
"""
# KEYS[1] marks the batch as applied. ARGV[1] is its ttl, then operations: hf (HINCRBYFLOAT key field
# value), hi (HINCRBY key field value), sa (SADD key member), hs (HSET key field value, then PEXPIRE
# key ttl), xa (XADD key MAXLEN ~ limit * with n field/value pairs).
APPLY_ONCE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
local pos = 2
while pos <= #ARGV do
  local op = ARGV[pos]
  if op == 'hf' then
    redis.call('HINCRBYFLOAT', ARGV[pos + 1], ARGV[pos + 2], ARGV[pos + 3])
    pos = pos + 4
  elseif op == 'hi' then
    redis.call('HINCRBY', ARGV[pos + 1], ARGV[pos + 2], ARGV[pos + 3])
    pos = pos + 4
  elseif op == 'sa' then
    redis.call('SADD', ARGV[pos + 1], ARGV[pos + 2])
    pos = pos + 3
  elseif op == 'hs' then
    redis.call('HSET', ARGV[pos + 1], ARGV[pos + 2], ARGV[pos + 3])
    redis.call('PEXPIRE', ARGV[pos + 1], ARGV[pos + 4])
    pos = pos + 5
  elseif op == 'xa' then
    local n = tonumber(ARGV[pos + 3])
    local fields = {}
    for j = 1, 2 * n do fields[j] = ARGV[pos + 3 + j] end
    redis.call('XADD', ARGV[pos + 1], 'MAXLEN', '~', ARGV[pos + 2], '*', unpack(fields))
    pos = pos + 4 + 2 * n
  else
    return redis.error_reply('unknown operation ' .. tostring(op))
  end
end
return 1
"""
SAVE_STATE = """
local current = redis.call('HGET', KEYS[1], 'revision')
if current and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'revision', ARGV[1], 'payload', ARGV[2])
return 1
"""
