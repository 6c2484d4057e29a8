-- record.lua: count a batch of outcomes into the breaker and trip it when a
-- policy says so.
--
-- A batch holds the outcomes one instance saw under one generation, as
-- counts: successes, failures and slow calls, and their order as far as the
-- consecutive-failures policy needs it (failures before the first success,
-- after the last one, and the longest run in between). Each batch carries
-- the instance's sequence number; a batch whose sequence is not above the
-- last one applied for that instance is a duplicate (a retry after a
-- timeout, or a call that a hung Redis ran late) and changes nothing.
--
-- Outcomes of a current generation (see lib.lua) are counted: in the closed
-- state into the windows (and may trip the breaker), in the half-open state
-- as a probe result (a failure reopens, enough successes close). Outcomes of
-- an older generation are stale: they describe a period that has ended, so
-- they go to the totals and to the stale count only, never to a newer state.
--
-- KEYS, common ARGV and reply: see lib.lua.
-- ARGV[20] generation the outcomes were admitted under (0 = unknown: current)
-- ARGV[21] probe lease id to release ('' when none)
-- ARGV[22] sequence number (0: not deduplicated)
-- ARGV[23..28] successes, failures, slow calls, leading failures, trailing
--          failures, longest run of failures between successes
-- ARGV[29] µs since the batch's last success (its age when sent)
-- ARGV[30] µs since the first of the batch's trailing failures
-- ARGV[31] settling time (µs): how late a batch may arrive after its
--          outcomes happened (0 for outcomes reported one by one)
-- ARGV[32] Redis time (µs) through which failures have settled, as the
--          asking instance knows (0: none): an instance looks again once
--          its own failures have settled, even while Redis's clock stands
-- ARGV[33] 1 to renew the keys' idle expiry now: fast.lua never does, so
--          the store sends a report here once per eighth of the expiry;
--          the prelude also renews it once per eighth of it
--
-- The consecutive-failures policy orders outcomes by when they happened,
-- not by when their batches arrive: the run is kept as a list of (time,
-- failures) entries (field rl), a success is an entry with no failures
-- that ends the run before it, and only failures older than the settling
-- time count towards a trip, so that a success another instance has not
-- reported yet can still split a run. A run a success ended is kept until
-- its failures have settled, and trips the breaker then if it is long
-- enough: a success reported early does not erase it. A run that one
-- instance made alone is in that instance's own order and counts at once
-- (field ri: the instance, or '*' for several). A trip therefore comes at
-- most a settling time after the failure that makes it. Sooner, as a rule:
-- when the failures of several instances make a run long enough to trip
-- once it settles, the script publishes "settle <generation> <name>" with
-- its HMAC (see lib.lua's reply), and every instance that holds outcomes
-- of the breaker reports them at once; the instance whose batch made the
-- run looks again once they had time to (reply field 29).
-- Verdicts: "counted", "stale", "duplicate" (with the last sequence applied
-- for the instance as field 28 of the reply). A counted reply that asked
-- the instances to report has field 28 0 and field 29 1.

local err = load(false, true)
if err then return redis.error_reply(err) end

local n = {}
for i = 20, 32 do
  if i ~= 21 then
    local x = tonumber(ARGV[i])
    if x == nil or x ~= x or x < 0 or x >= MAXINT or x ~= math.floor(x) then
      return redis.error_reply('BWARGS record argument ' .. i .. ' is not a count')
    end
    n[i] = x
  end
end
local gen, lease, seq = n[20], ARGV[21] or '', n[22]
local ok, ko, slow, lead, trail, run = n[23], n[24], n[25], n[26], n[27], n[28]
local ok_at = math.max(0, NOW_US - n[29]) -- when the last success happened (µs)
local ko_at = math.max(0, NOW_US - n[30]) -- when the trailing failures began (µs)
local settled_at = math.max(NOW_US - n[31], n[32])

-- The current run of failures: entries "time:count" in time order. An
-- entry with count 0 is a success: it ends the failures before it, a
-- closed run that is kept until it has settled (a success another instance
-- has not reported yet may still split it, and a failure reported late
-- must not join the run after it) and trips the breaker then if it is long
-- enough. RI is who made the open run, the failures after the last
-- success: an instance, or '*' for several.
local RUN = {}
local RI = ST.ri
local LEAD -- the entry of this batch's failures before its first success
for tm, c in string.gmatch(ST.rl, '(%d+):(%d+)') do
  RUN[#RUN + 1] = {tonumber(tm), tonumber(c)}
end
local function run_add(tm, c)
  local e = {tm, c}
  RUN[#RUN + 1] = e
  if RI == '' then RI = INSTANCE elseif RI ~= INSTANCE then RI = '*' end
  return e
end
-- run_end adds a success: after every entry, it leaves no open run.
local function run_end(tm)
  local last = true
  for _, e in ipairs(RUN) do
    if e[1] > tm or (e[1] == tm and e[2] > 0) then last = false end
  end
  RUN[#RUN + 1] = {tm, 0}
  if last then RI = '' end
end
-- run_settle sorts the run and returns the longest run of failures known
-- to be consecutive: failures settled through `through`; all of the open
-- run when one instance made it (its own order); and a batch's failures
-- before its first success, which that success follows. It drops the
-- closed runs that can change no more, those before a settled success.
local function run_settle(through)
  table.sort(RUN, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
  local open = 0 -- the last success: the open run follows it
  for i, e in ipairs(RUN) do
    if e[2] == 0 then open = i end
  end
  local one = RI ~= '*' and RI ~= ''
  local longest, len, cut = 0, 0, 0
  for i, e in ipairs(RUN) do
    if e[2] == 0 then
      longest = math.max(longest, len)
      len = 0
      if e[1] <= through then cut = i end
    elseif e[1] <= through or e == LEAD or (one and i > open) then
      len = len + e[2]
    end
  end
  longest = math.max(longest, len)
  if cut > 0 then
    local kept = {}
    for i = cut + 1, #RUN do kept[#kept + 1] = RUN[i] end
    RUN = kept
  end
  return longest
end
-- run_save keeps 32 entries at most (it merges the oldest two adjacent
-- failures, else forgets the oldest closed run), forgets successes with no
-- failure left, and saves the run and the open run's length (cf).
local function run_save()
  while #RUN > 32 do
    local merged = false
    for i = 1, #RUN - 1 do
      if RUN[i][2] > 0 and RUN[i + 1][2] > 0 then
        RUN[i][2] = RUN[i][2] + RUN[i + 1][2]
        table.remove(RUN, i + 1)
        merged = true
        break
      end
    end
    if not merged then
      while RUN[1][2] > 0 do table.remove(RUN, 1) end
      table.remove(RUN, 1)
    end
  end
  local parts, failures, cf = {}, false, 0
  for i, e in ipairs(RUN) do
    parts[i] = string.format('%d:%d', e[1], e[2])
    if e[2] > 0 then failures = true end
    if e[2] == 0 then cf = 0 else cf = cf + e[2] end
  end
  if not failures then parts, RI = {}, '' end
  local rl = table.concat(parts, ' ')
  if rl ~= ST.rl then set('rl', rl) end
  if RI ~= ST.ri then set('ri', RI) end
  if cf > 0 and ST.cf == 0 then set('cfat', NOW) end
  if cf == 0 and ST.cf > 0 then set('cfat', 0) end
  if cf ~= ST.cf then set('cf', cf) end
end
if lead > ko or trail > ko or run > ko or slow > ok + ko or (ok == 0 and (lead ~= ko or trail ~= ko)) then
  return redis.error_reply('BWARGS record batch counts do not add up')
end

if seq > 0 and seq <= LAST_SEQ then
  -- with the last sequence applied, as field 28: an instance whose batch
  -- was never sent before learns that the store holds a later sequence
  -- for it than its clock gives, and goes on above it
  local r = reply('duplicate', 0, '')
  r[28] = LAST_SEQ
  return r
end
if gen > P.known then rawset(P, 'known', gen) end
err = catch_up()
if err then return redis.error_reply(err) end
if seq > 0 then set(SEQ_FIELD, seq) end

if lease ~= '' then
  redis.call('ZREM', K_LEASE, lease)
end

local function quorum(since)
  return P.quorum <= 1 or troubled(since) >= P.quorum
end

local function trip_reason(longest)
  if P.consecutive > 0 and longest >= P.consecutive and quorum(ST.cfat) then
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

add('tok', ok)
add('tko', ko)
add('tslow', slow)

local verdict = 'counted'
local cf_before = 0 -- the open run's length before this batch (closed)
local SETTLE = false -- ask every instance to report now (see below)
if ok + ko == 0 then
  -- nothing to count: a lease release, a request to catch up, or a look
  -- at failures that have settled since they were reported
  if ST.st == 'closed' and P.consecutive > 0 and ST.rl ~= '' and (gen == 0 or gen >= ST.fl) then
    local longest = run_settle(settled_at)
    run_save()
    local why = trip_reason(longest)
    if why == 'consecutive_failures' then transition('open', why) end
  end
elseif gen ~= 0 and gen < ST.fl then
  add('tstale', ok + ko)
  verdict = 'stale'
elseif ST.st == 'closed' then
  cf_before = ST.cf
  add('ok', ok)
  add('ko', ko)
  if WINDOW_ON then window_add(ok + ko, ko, slow) end
  -- Runs of failures, ordered by when they happened (see above); nothing
  -- to do for successes when no failure is outstanding.
  local longest = run
  if ko > 0 or ST.rl ~= '' or ST.cf ~= 0 or ST.ri ~= '' then
    -- An instance's outcomes come in its own order: a batch's are not put
    -- before the entries of its earlier ones (field t.<instance>), whatever
    -- Redis's clock did meanwhile (it stands still in tests; it may be set
    -- back). A value that is not a time is no floor: it is written anew.
    local t_field = 't.' .. INSTANCE
    local floor = math.min(tonumber(string.match(redis.call('HGET', K_STATE, t_field) or '', '^%d+$') or '0'), NOW_US)
    local last
    if ok > 0 then
      -- the failures before the batch's first success, then its last success
      -- (a success after the instance's latest entry, its lead after that)
      if lead > 0 then ok_at = math.max(ok_at, floor + 2) else ok_at = math.max(ok_at, floor + 1) end
      if lead > 0 then LEAD = run_add(ok_at - 1, lead) end
      run_end(ok_at)
      last = ok_at
      if trail > 0 then
        ko_at = math.max(ko_at, ok_at)
        run_add(ko_at, trail)
        last = ko_at
      end
    elseif ko > 0 then
      ko_at = math.max(ko_at, floor)
      run_add(ko_at, ko)
      last = ko_at
    end
    longest = math.max(longest, run_settle(settled_at))
    run_save()
    -- (only while a run is kept: with none, nothing is left to order against)
    if last and ST.rl ~= '' and last ~= floor then
      redis.call('HSET', K_STATE, t_field, string.format('%d', last))
    end
  end
  if P.consecutive > 0 and longest >= P.consecutive and ko == 0 then
    -- failures that settled since the last batch trip the breaker now
    local why = trip_reason(longest)
    if why then transition('open', why) end
  end
  -- A run of failures that several instances made, long enough to trip
  -- once it settles: ask every instance to report what it holds now (a
  -- success one of them holds may split the run), once per run that
  -- reaches the threshold. The asking instance looks again soon after
  -- (reply field 29) rather than a settling time later.
  if ko > 0 and P.consecutive > 0 and RI == '*' and cf_before < P.consecutive and ST.cf >= P.consecutive then
    SETTLE = true
  end
  if ko > 0 or slow > 0 then
    if P.quorum > 1 then
      local oldest = NOW - P.window
      if ST.cfat > 0 then oldest = math.min(oldest, ST.cfat) end
      redis.call('ZREMRANGEBYSCORE', K_INST, '-inf', '(' .. string.format('%d', oldest))
      redis.call('ZADD', K_INST, NOW, INSTANCE)
      I_DIRTY = true
    end
    if ST.st == 'closed' then
      local why = trip_reason(longest)
      if why then transition('open', why) end
    end
  end
elseif ST.st == 'half_open' and lease ~= '' then
  if ko > 0 or (slow > 0 and P.slow_rate > 0) then
    add('ko', ko)
    add('ok', ok)
    transition('open', 'probe_failed')
  else
    add('ok', ok)
    add('hs', ok)
    if ST.hs >= P.successes then
      transition('closed', 'probes_succeeded')
    end
  end
else
  -- open, forced open, disabled, or half-open without a probe lease, under
  -- a current generation: the calls ran without a permit from the shared
  -- state (a disabled breaker, or an instance deciding locally); they are
  -- counted, but trip nothing.
  add('ok', ok)
  add('ko', ko)
end

save()
local r = reply(verdict, 0, '')
if SETTLE and ST.st == 'closed' then
  -- "settle <generation> <name>", then HMAC-SHA1 of that line keyed with
  -- sk (as an announcement's): an instance that verifies it reports the
  -- outcomes it holds of the breaker at once.
  local msg = 'settle ' .. string.format('%d', ST.gen) .. ' ' .. NAME
  redis.call('PUBLISH', CHANNEL, msg .. '\n' .. hmac(ST.sk, msg))
  r[28], r[29] = 0, 1
end
return r
