-- record.lua: count outcomes into the breaker and trip it when a policy says so.
--
-- Outcomes carry the generation they were admitted under. An outcome of the
-- current generation is counted: in the closed state into the windows (and
-- may trip the breaker), in the half-open state as a probe result (a failure
-- reopens, enough successes close). An outcome of another generation is stale:
-- it describes a period that has ended, so it is added to the totals and to
-- the stale count only, never applied to the newer state.
--
-- KEYS, common ARGV and reply: see lib.lua.
-- ARGV[19] generation the outcomes were admitted under
-- ARGV[20] probe lease id to release ('' when none)
-- ARGV[21] outcomes, one character each, in order: S success, F failure,
--          s slow success, f slow failure, I ignored (releases the lease only)
-- Verdicts: "counted" (all counted), "stale" (none counted), "partial".

local err = load()
if err then return redis.error_reply(err) end

local gen = tonumber(ARGV[19])
local lease = ARGV[20] or ''
local outcomes = ARGV[21] or ''
if gen == nil then
  return redis.error_reply('BWARGS record needs a generation')
end
if string.find(outcomes, '[^SFsfI]') then
  return redis.error_reply('BWARGS record outcomes must be made of S F s f I')
end

if lease ~= '' then
  redis.call('ZREM', K_LEASE, lease)
end

local function quorum(since)
  return P.quorum <= 1 or troubled(since) >= P.quorum
end

local function trip_reason()
  if P.consecutive > 0 and ST.cf >= P.consecutive and quorum(ST.cfat) then
    return 'consecutive_failures'
  end
  if SUM.t > 0 and SUM.t >= P.min_calls then
    if P.rate > 0 and SUM.f / SUM.t >= P.rate and quorum(NOW - P.window) then
      return 'failure_rate'
    end
    if P.slow_rate > 0 and SUM.s / SUM.t >= P.slow_rate and quorum(NOW - P.window) then
      return 'slow_call_rate'
    end
  end
  return nil
end

local counted, stale = 0, 0
local marked = false
for i = 1, #outcomes do
  local c = string.sub(outcomes, i, i)
  if c ~= 'I' then
    local fail = (c == 'F' or c == 'f')
    local slow = (c == 's' or c == 'f')
    if fail then ST.tko = ST.tko + 1 else ST.tok = ST.tok + 1 end
    if slow then ST.tslow = ST.tslow + 1 end
    DIRTY = true
    if ST.gen ~= gen then
      ST.tstale = ST.tstale + 1
      stale = stale + 1
    elseif ST.st == 'closed' then
      counted = counted + 1
      if WINDOW_ON then window_add(fail, slow) end
      if fail then
        ST.ko = ST.ko + 1
        if ST.cf == 0 then ST.cfat = NOW end
        ST.cf = ST.cf + 1
      else
        ST.ok = ST.ok + 1
        ST.cf, ST.cfat = 0, 0
      end
      if fail or slow then
        if P.quorum > 1 and not marked then
          local oldest = NOW - P.window
          if ST.cfat > 0 then oldest = math.min(oldest, ST.cfat) end
          redis.call('ZREMRANGEBYSCORE', K_INST, '-inf', '(' .. string.format('%d', oldest))
          redis.call('ZADD', K_INST, NOW, INSTANCE)
          marked, I_DIRTY = true, true
        end
        local why = trip_reason()
        if why then transition('open', why) end
      end
    elseif ST.st == 'half_open' then
      counted = counted + 1
      if fail or (slow and P.slow_rate > 0) then
        ST.ko = ST.ko + 1
        transition('open', 'probe_failed')
      else
        ST.ok = ST.ok + 1
        ST.hs = ST.hs + 1
        if ST.hs >= P.successes then
          transition('closed', 'probes_succeeded')
        end
      end
    else
      -- open, forced open or disabled under this very generation: the call
      -- ran without a permit from the shared state (a disabled breaker, or an
      -- instance deciding locally); it is counted, but trips nothing.
      counted = counted + 1
      if fail then ST.ko = ST.ko + 1 else ST.ok = ST.ok + 1 end
    end
  end
end

local verdict = 'counted'
if stale > 0 then
  if counted > 0 then verdict = 'partial' else verdict = 'stale' end
end
save()
return reply(verdict, 0, '')
