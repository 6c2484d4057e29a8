-- acquire.lua: may a call run now? Closed and disabled breakers allow it; an
-- open breaker whose open time is over turns half-open; a half-open breaker
-- grants a probe lease while fewer than the allowed number of leases are live.
-- Expired leases are dropped first, so a prober that vanished frees its place.
--
-- KEYS, common ARGV and reply: see lib.lua.
-- ARGV[20] the lease id to grant (unique per call).
-- Verdicts: "allow", "probe" (reply[21] is the lease), "reject" (reply[4] is
-- the wait in ms: until the next probe, or until a live lease expires).

local err = load(false, false) or catch_up()
if err then return redis.error_reply(err) end

local lease_id = ARGV[20]
if lease_id == nil or lease_id == '' then
  return redis.error_reply('BWARGS acquire needs a lease id')
end

if ST.st == 'open' and NOW >= ST.probe_at then
  transition('half_open', 'open_timeout')
end

local verdict, wait, lease = 'allow', 0, ''
if ST.st == 'open' or ST.st == 'forced_open' then
  verdict = 'reject'
elseif ST.st == 'half_open' then
  redis.call('ZREMRANGEBYSCORE', K_LEASE, '-inf', NOW)
  local live = redis.call('ZRANGE', K_LEASE, 0, -1, 'WITHSCORES')
  local n = #live / 2
  local first = nil
  for i = 2, #live, 2 do
    local exp = tonumber(live[i])
    if exp == nil or exp ~= exp or exp > NOW + P.lease or exp == math.huge then
      return redis.error_reply('BWCORRUPT lease zset ' .. K_LEASE .. ' member ' .. live[i - 1] ..
        ' expires at ' .. live[i] .. ', beyond the probe lease')
    end
    if first == nil then first = exp end
  end
  if n < P.probes then
    redis.call('ZADD', K_LEASE, NOW + P.lease, lease_id)
    L_DIRTY = true
    verdict, lease = 'probe', lease_id
  else
    verdict = 'reject'
    wait = math.max(0, first - NOW)
  end
end

save()
return reply(verdict, wait, lease)
