-- budget.lua: a retry budget shared by a fleet. Over a sliding window, the
-- fleet may retry at most
--
--   limit = floor(ratio × requests + floor_rate × window seconds)
--
-- times, where requests are the operations the fleet started in the window.
-- A call adds the requests its instance has counted since its last call, then
-- grants as many of the retries it wants as the limit leaves (possibly none,
-- possibly fewer than wanted). A call that wants none only adds requests.
--
-- The window is a ring of buckets of width = floor(window / buckets) ms on
-- Redis's clock; bucket k holds the index (time / width) it was last used
-- at and is part of the window while that index is > current - buckets. The
-- key expires when no instance has written to it for the idle expiry.
--
-- KEYS (one key: the budget's own hash tag {<prefix>:retry:<name>}):
--   KEYS[1] window hash: i<k> bucket index, r<k> requests, t<k> retries
-- ARGV:
--   1 window (ms)   2 buckets (1 to 1000)   3 ratio (retries per request, >= 0)
--   4 floor_rate (retries per second, >= 0)   5 requests to add (>= 0)
--   6 retries wanted (>= 0)   7 retries already made without a grant, while
--   the instance could not reach Redis: counted, never refused (>= 0)
--   8 idle expiry (ms, > 0)
-- Reply, a flat array of integers:
--   1 retries granted   2 requests in the window   3 retries in the window
--   (granted ones included)   4 the limit   5 ms until the window next slides
-- Errors: "BWCORRUPT ..." when the key holds data this layout does not know,
--   "BWARGS ..." when the arguments are malformed.

local NOW
do
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local KEY = KEYS[1]
local A = {}
local NAMES = {'window', 'buckets', 'ratio', 'floor_rate', 'requests', 'want',
  'spent', 'ttl'}
for i, name in ipairs(NAMES) do
  local n = tonumber(ARGV[i])
  if n == nil or not (n >= 0) or n == math.huge then
    return redis.error_reply('BWARGS argument ' .. i .. ' (' .. name .. ') is not a finite number >= 0')
  end
  A[name] = n
end
if A.buckets < 1 or A.buckets > 1000 or A.buckets ~= math.floor(A.buckets) then
  return redis.error_reply('BWARGS buckets must be a whole number from 1 to 1000')
end
if A.window < A.buckets then
  return redis.error_reply('BWARGS window must be at least 1 ms per bucket')
end
if A.ttl < 1 then
  return redis.error_reply('BWARGS idle expiry must be positive')
end
for _, name in ipairs({'requests', 'want', 'spent'}) do
  if A[name] ~= math.floor(A[name]) then
    return redis.error_reply('BWARGS ' .. name .. ' must be a whole number')
  end
end

local WIDTH = math.floor(A.window / A.buckets)
local IDX = math.floor(NOW / WIDTH)
local CUR = IDX % A.buckets

-- Read the ring; buckets outside the window count nothing.
local fields = {}
for k = 0, A.buckets - 1 do
  fields[#fields + 1] = 'i' .. k
  fields[#fields + 1] = 'r' .. k
  fields[#fields + 1] = 't' .. k
end
local v = redis.call('HMGET', KEY, unpack(fields))
local requests, retries = 0, 0
local cur = {i = IDX, r = 0, t = 0}
for k = 0, A.buckets - 1 do
  local b = {}
  for j, f in ipairs({'i', 'r', 't'}) do
    local x = v[k * 3 + j]
    local n = 0
    if x ~= false then
      n = tonumber(x)
      if n == nil then
        return redis.error_reply('BWCORRUPT budget hash ' .. KEY .. ' field ' .. f .. k .. ' is not a number')
      end
    end
    b[f] = n
  end
  if b.i > IDX - A.buckets and b.i <= IDX and b.i % A.buckets == k then
    requests = requests + b.r
    retries = retries + b.t
    if k == CUR then cur = b end
  end
end

requests = requests + A.requests
retries = retries + A.spent
-- The small epsilon keeps 0.1 × 30 from flooring to 2.
local limit = math.floor(A.ratio * requests + A.floor_rate * WIDTH * A.buckets / 1000 + 1e-9)
local granted = math.max(0, math.min(A.want, limit - retries))
retries = retries + granted

local add = A.requests + A.spent + granted
if add > 0 then
  redis.call('HSET', KEY, 'i' .. CUR, string.format('%d', IDX),
    'r' .. CUR, string.format('%d', cur.r + A.requests),
    't' .. CUR, string.format('%d', cur.t + A.spent + granted))
  redis.call('PEXPIRE', KEY, A.ttl)
end

return {granted, requests, retries, limit, (IDX + 1) * WIDTH - NOW}
