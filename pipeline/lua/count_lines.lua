-- Adds one batch of per-record counts for one input partition, once.
-- KEYS[1] high-water key of the partition, KEYS[2] totals hash
-- ARGV[1] last offset of the batch, ARGV[2..] alternating field, increment
-- The worker processes a partition in offset order and stores offsets only after
-- this call returns, so a batch at or below the high-water mark was already
-- counted: a redelivery after a crash adds nothing.
local last = tonumber(ARGV[1])
local hw = tonumber(redis.call('GET', KEYS[1]) or '-1')
if last <= hw then
  return 0
end
redis.call('SET', KEYS[1], last)
for i = 2, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], tonumber(ARGV[i + 1]))
end
return 1
