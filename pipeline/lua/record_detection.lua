-- Records one detection once, by event id, and returns the source's aggregate.
-- KEYS: 1 dedup bitmap bucket, 2 totals, 3 days set, 4 day hash, 5 day attack-source
--   set, 6 day techniques hash, 7 day fields hash, 8 source hash, 9 source days set,
--   10 source techniques set, 11 sources index set
-- ARGV: 1 bit in bucket, 2 bucket ttl seconds, 3 day, 4 source ip ('' = none),
--   5 malicious 0/1, 6 event time, 7 techniques (JSON list), 8 fields (JSON list),
--   9 source flags (JSON object of name -> 1), 10 source attributes (JSON object)
-- Returns {new 0/1, hits, inert, days, first_seen, last_seen, techniques JSON, flags JSON}
local new = redis.call('SETBIT', KEYS[1], ARGV[1], 1) == 0
if new then
  redis.call('EXPIRE', KEYS[1], ARGV[2], 'NX')
  local malicious = ARGV[5] == '1'
  local ip = ARGV[4]
  local day = ARGV[3]
  local ts = tonumber(ARGV[6])
  redis.call('SADD', KEYS[3], day)
  if malicious then
    redis.call('HINCRBY', KEYS[2], 'attacks', 1)
    redis.call('HINCRBY', KEYS[4], 'attacks', 1)
    for _, t in ipairs(cjson.decode(ARGV[7])) do
      redis.call('HINCRBY', KEYS[6], t, 1)
    end
    for _, f in ipairs(cjson.decode(ARGV[8])) do
      redis.call('HINCRBY', KEYS[7], f, 1)
    end
  else
    redis.call('HINCRBY', KEYS[2], 'inert', 1)
    redis.call('HINCRBY', KEYS[4], 'inert', 1)
  end
  if ip ~= '' then
    redis.call('SADD', KEYS[11], ip)
    redis.call('HINCRBY', KEYS[8], malicious and 'hits' or 'inert', 1)
    if malicious then
      redis.call('SADD', KEYS[5], ip)
      redis.call('SADD', KEYS[9], day)
      for _, t in ipairs(cjson.decode(ARGV[7])) do
        redis.call('SADD', KEYS[10], t)
      end
    end
    local first = tonumber(redis.call('HGET', KEYS[8], 'first_seen') or ts)
    local last = tonumber(redis.call('HGET', KEYS[8], 'last_seen') or ts)
    redis.call('HSET', KEYS[8], 'first_seen', tostring(math.min(first, ts)),
      'last_seen', tostring(math.max(last, ts)))
    for name, _ in pairs(cjson.decode(ARGV[9])) do
      redis.call('HSET', KEYS[8], 'flag:' .. name, '1')
    end
    for name, value in pairs(cjson.decode(ARGV[10])) do
      redis.call('HSET', KEYS[8], name, tostring(value))
    end
  end
end
if ARGV[4] == '' then
  return {new and 1 or 0, 0, 0, 0, '', '', '[]', '{}'}
end
local flags = {}
local fields = redis.call('HGETALL', KEYS[8])
local view = {}
for i = 1, #fields, 2 do
  view[fields[i]] = fields[i + 1]
  if string.sub(fields[i], 1, 5) == 'flag:' then
    flags[string.sub(fields[i], 6)] = 1
  end
end
local techniques = redis.call('SMEMBERS', KEYS[10])
return {
  new and 1 or 0,
  tonumber(view['hits'] or '0'),
  tonumber(view['inert'] or '0'),
  redis.call('SCARD', KEYS[9]),
  view['first_seen'] or '',
  view['last_seen'] or '',
  #techniques > 0 and cjson.encode(techniques) or '[]',
  next(flags) and cjson.encode(flags) or '{}',
}
