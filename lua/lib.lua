-- lib.lua: the prelude of every breaker script; lua.go prepends it to each one.
-- It reads the breaker from Redis, validates what it finds, and offers the
-- transition, window and reply helpers that the scripts share.
--
-- KEYS (all four share the breaker's hash tag {<prefix>:<name>}):
--   KEYS[1] state hash
--   KEYS[2] window hash (used with a rate policy): a ring of buckets i<k> (bucket index), t<k> (calls),
--           f<k> (failures), s<k> (slow calls)
--   KEYS[3] troubled instances (used with a quorum): zset instance -> time (ms) of its last failure or slow call
--   KEYS[4] probe leases: zset lease id -> expiry (ms)
-- ARGV (common to every script):
--   1 pub/sub channel   2 breaker name   3 instance id   4 idle expiry (ms, 0 = never)
--   5 consecutive failures to trip (0 = off)   6 failure rate to trip (0 = off)
--   7 slow-call rate to trip (0 = off)   8 minimum calls in the window
--   9 window (ms)   10 window buckets   11 quorum (distinct troubled instances)
--   12 probe successes to close   13 concurrent probes   14 probe lease (ms)
--   15 open duration (ms)   16 maximum open duration (ms)   17 jitter fraction
--   18 a random number in [0, 1) for the jitter
--   19.. script specific (see each script)
-- Reply (every script), a flat array:
--   1 verdict   2 state   3 generation   4 wait (ms; -1 = until forced closed)
--   5 previous state   6 reason of the last transition   7 instance that caused it
--   8 ms since the last transition   9 successes   10 failures   11 consecutive failures
--   12 probe successes   13 window calls   14 window failures   15 window slow calls
--   16 troubled instances in the window (0 unless quorum > 1)   17 total successes   18 total failures
--   19 total slow calls   20 total stale outcomes   21 lease id   22 1 if this call
--   changed the state, else 0   23 consecutive trips   24 failures counted in
--   the previous generation
-- Errors: "BWCORRUPT ..." when the keys hold data this layout does not know,
--   "BWARGS ..." when the arguments are malformed.

local NOW
do
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local K_STATE, K_WIN, K_INST, K_LEASE = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local CHANNEL, NAME, INSTANCE = ARGV[1], ARGV[2], ARGV[3]

local P = {}
local PARAMS = {'ttl', 'consecutive', 'rate', 'slow_rate', 'min_calls', 'window',
  'buckets', 'quorum', 'successes', 'probes', 'lease', 'open', 'open_max',
  'jitter', 'rand'}
local function load_params()
  for i, name in ipairs(PARAMS) do
    local n = tonumber(ARGV[i + 3])
    if n == nil then
      return 'BWARGS argument ' .. (i + 3) .. ' (' .. name .. ') is not a number'
    end
    P[name] = n
  end
  if P.window < 1 or P.buckets < 1 or P.buckets > 1000 then
    return 'BWARGS window and buckets must be positive'
  end
  return nil
end

local FIELDS = {'st', 'gen', 'probe_at', 'trips', 'from', 'why', 'by', 'at',
  'ok', 'ko', 'cf', 'cfat', 'hs', 'tok', 'tko', 'tslow', 'tstale', 'pko'}
local TEXT = {st = true, from = true, why = true, by = true}
local STATES = {closed = true, open = true, half_open = true,
  forced_open = true, disabled = true}

local ST = {}
local DIRTY = false
local CHANGED = 0

local function fresh(gen)
  ST = {st = 'closed', gen = gen, probe_at = 0, trips = 0, from = 'closed',
    why = 'created', by = INSTANCE, at = NOW, ok = 0, ko = 0, cf = 0, cfat = 0,
    hs = 0, tok = 0, tko = 0, tslow = 0, tstale = 0, pko = 0}
  DIRTY = true
end

-- load_state reads the state hash, or starts a breaker when there is none.
-- A new breaker's generation is Redis's clock in ms, so generations keep
-- growing when the keys expire or Redis loses them.
local function load_state()
  local v = redis.call('HMGET', K_STATE, unpack(FIELDS))
  if v[1] == false and v[2] == false then
    fresh(NOW)
    return nil
  end
  for i, f in ipairs(FIELDS) do
    local x = v[i]
    if x == false then
      return 'BWCORRUPT state hash ' .. K_STATE .. ' lacks field ' .. f
    end
    if TEXT[f] then
      ST[f] = x
    else
      local n = tonumber(x)
      if n == nil then
        return 'BWCORRUPT state hash ' .. K_STATE .. ' field ' .. f .. ' is not a number'
      end
      ST[f] = n
    end
  end
  if not STATES[ST.st] then
    return 'BWCORRUPT state hash ' .. K_STATE .. ' has unknown state ' .. ST.st
  end
  return nil
end

-- The window ring: bucket k holds index i (NOW / width); it is part of the
-- window while i > IDX - buckets.
local RING = {}
local IDX = 0
local SUM = {t = 0, f = 0, s = 0}
local WIN_DIRTY = false

local function load_window()
  local width = math.max(1, math.floor(P.window / P.buckets))
  IDX = math.floor(NOW / width)
  local fields = {}
  for k = 0, P.buckets - 1 do
    fields[#fields + 1] = 'i' .. k
    fields[#fields + 1] = 't' .. k
    fields[#fields + 1] = 'f' .. k
    fields[#fields + 1] = 's' .. k
  end
  local v = redis.call('HMGET', K_WIN, unpack(fields))
  for k = 0, P.buckets - 1 do
    local b = {}
    for j, f in ipairs({'i', 't', 'f', 's'}) do
      local x = v[k * 4 + j]
      local n = 0
      if x ~= false then
        n = tonumber(x)
        if n == nil then
          return 'BWCORRUPT window hash ' .. K_WIN .. ' field ' .. f .. k .. ' is not a number'
        end
      end
      b[f] = n
    end
    if b.i <= IDX - P.buckets or b.i > IDX then
      b = {i = -1, t = 0, f = 0, s = 0}
    end
    RING[k] = b
    SUM.t = SUM.t + b.t
    SUM.f = SUM.f + b.f
    SUM.s = SUM.s + b.s
  end
  return nil
end

local function window_add(fail, slow)
  local k = IDX % P.buckets
  local b = RING[k]
  if b.i ~= IDX then
    SUM.t, SUM.f, SUM.s = SUM.t - b.t, SUM.f - b.f, SUM.s - b.s
    b = {i = IDX, t = 0, f = 0, s = 0}
    RING[k] = b
  end
  b.t = b.t + 1
  SUM.t = SUM.t + 1
  if fail then b.f = b.f + 1; SUM.f = SUM.f + 1 end
  if slow then b.s = b.s + 1; SUM.s = SUM.s + 1 end
  WIN_DIRTY = true
end

-- load reads what the script needs before anything is written, so that
-- foreign data stops a script before it changes a thing. The window is read
-- only when a rate policy is on, or when full (read and force); the other
-- keys' types are checked at O(1) cost.
local WINDOW_ON = false
local I_DIRTY, L_DIRTY = false, false
local function load(full)
  local err = load_params() or load_state()
  if err then return err end
  if full or P.rate > 0 or P.slow_rate > 0 then
    WINDOW_ON = true
    err = load_window()
    if err then return err end
  end
  -- These fail with WRONGTYPE on foreign data, at O(1) cost.
  if not WINDOW_ON then redis.call('HLEN', K_WIN) end
  redis.call('ZCARD', K_INST)
  redis.call('ZCARD', K_LEASE)
  return nil
end

local function troubled(since)
  return redis.call('ZCOUNT', K_INST, since, '+inf')
end

local function open_duration()
  local d = P.open
  if P.open_max > P.open then
    d = math.min(P.open * 2 ^ math.min(ST.trips - 1, 60), P.open_max)
  end
  if P.jitter > 0 then
    d = d * (1 + P.jitter * (2 * P.rand - 1))
  end
  return math.max(1, math.floor(d))
end

-- transition moves the breaker to a new state under a new generation, clears
-- what belonged to the old one, and announces the change.
local function transition(to, why)
  ST.from = ST.st
  ST.st = to
  ST.why = why
  ST.by = INSTANCE
  ST.at = NOW
  ST.gen = ST.gen + 1
  ST.pko = ST.ko
  ST.ok, ST.ko, ST.cf, ST.cfat, ST.hs, ST.probe_at = 0, 0, 0, 0, 0, 0
  if to == 'open' then
    ST.trips = ST.trips + 1
    ST.probe_at = NOW + open_duration()
  elseif to == 'closed' or to == 'disabled' then
    ST.trips = 0
  end
  redis.call('DEL', K_WIN, K_INST, K_LEASE)
  for k = 0, P.buckets - 1 do RING[k] = {i = -1, t = 0, f = 0, s = 0} end
  SUM = {t = 0, f = 0, s = 0}
  WIN_DIRTY = false
  DIRTY = true
  CHANGED = 1
  redis.call('PUBLISH', CHANNEL, string.format('%d', ST.gen) .. ' ' .. NAME)
end

-- save writes what changed and renews the idle expiry of what it wrote
-- (the state always: it is in use).
local function save()
  if DIRTY then
    local args = {}
    for _, f in ipairs(FIELDS) do
      args[#args + 1] = f
      local x = ST[f]
      if TEXT[f] then args[#args + 1] = x else args[#args + 1] = string.format('%d', x) end
    end
    redis.call('HSET', K_STATE, unpack(args))
  end
  if WIN_DIRTY then
    local k = IDX % P.buckets
    local b = RING[k]
    redis.call('HSET', K_WIN, 'i' .. k, string.format('%d', b.i), 't' .. k, b.t,
      'f' .. k, b.f, 's' .. k, b.s)
  end
  if P.ttl > 0 then
    redis.call('PEXPIRE', K_STATE, P.ttl)
    if WIN_DIRTY then redis.call('PEXPIRE', K_WIN, P.ttl) end
    if I_DIRTY then redis.call('PEXPIRE', K_INST, P.ttl) end
    if L_DIRTY then redis.call('PEXPIRE', K_LEASE, P.ttl) end
  end
end

-- troubled_now counts the troubled instances in the window; they are
-- tracked only when a quorum is asked for.
local function troubled_now()
  if P.quorum <= 1 then return 0 end
  return troubled(NOW - P.window)
end

local function reply(verdict, wait, lease)
  if ST.st == 'open' then
    wait = math.max(0, ST.probe_at - NOW)
  elseif ST.st == 'forced_open' then
    wait = -1
  end
  return {verdict, ST.st, ST.gen, wait, ST.from, ST.why, ST.by, NOW - ST.at,
    ST.ok, ST.ko, ST.cf, ST.hs, SUM.t, SUM.f, SUM.s, troubled_now(),
    ST.tok, ST.tko, ST.tslow, ST.tstale, lease or '', CHANGED, ST.trips, ST.pko}
end
