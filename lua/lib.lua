-- lib.lua: the prelude of every breaker script; lua.go prepends it to each one.
-- It reads what a script needs of the breaker, validates it, and offers the
-- transition, window and reply helpers that the scripts share. It is lean on
-- purpose: parameters are converted when first used, the state hash is read
-- with one HMGET, and only the fields that changed are written back.
--
-- KEYS (all share the breaker's hash tag {<prefix>:<name>}):
--   KEYS[1] state hash (fields: see FIELDS below, and q.<instance>: the
--           last flush sequence applied for that instance)
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
--   19 the generation the asking instance knows (0 = none)
--   20.. script specific (see each script)
-- Reply (every script), a flat array:
--   1 verdict   2 state   3 generation   4 wait (ms; -1 = until forced closed)
--   5 previous state   6 reason of the last transition   7 instance that caused it
--   8 ms since the last transition   9 successes   10 failures   11 consecutive failures
--   12 probe successes   13 window calls   14 window failures   15 window slow calls
--   16 troubled instances in the window (0 unless quorum > 1)   17 total successes   18 total failures
--   19 total slow calls   20 total stale outcomes   21 lease id   22 1 if this call
--   changed the state, else 0   23 consecutive trips   24 failures counted in
--   the previous generation   25 Redis's clock (ms)   26 Redis's clock (µs)
--   27 the breaker's announcement key (field sk)
-- Announcements: a script that makes a transition publishes on the channel
--   "<generation> <name>", a newline, fields 2-20 and 23-26 of its reply
--   separated by spaces, a newline, and HMAC-SHA1 of the two lines keyed
--   with sk (hex). The store verifies it with the key a reply or a read
--   gave it; a message it cannot verify is only a hint to read the state.
-- Errors: "BWCORRUPT ..." when the keys hold data this layout does not know,
--   "BWARGS ..." when the arguments are malformed.
--
-- Generations. Every transition moves the generation on by one and sets the
-- floor (field fl) to it: outcomes admitted under a generation from fl up to
-- gen are current, older ones are stale. A store that went back (restored
-- from an older snapshot, a lagging replica promoted) may hear of a
-- generation above its own: it then moves its generation past it, keeps its
-- floor, and announces the change, so that no outcome is dropped as stale
-- merely because the store forgot, and every instance follows the store.
-- A breaker created anew (first use, or its keys lost) has floor 1: what
-- the store forgot counts as current.

local NOW, NOW_US
do
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  NOW_US = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local K_STATE, K_WIN, K_INST, K_LEASE = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local CHANNEL, NAME, INSTANCE = ARGV[1], ARGV[2], ARGV[3]
local MAXINT = 9007199254740992 -- 2^53
-- MAXGEN bounds generations: one is Redis's clock in ms when the breaker
-- was made, plus one per transition, so a generation of 2^52 or more is
-- corrupt data (and a known one is no generation the store ever gave).
local MAXGEN = 4503599627370496 -- 2^52

-- P converts a parameter when it is first used.
local PARAMS = {ttl = 4, consecutive = 5, rate = 6, slow_rate = 7, min_calls = 8,
  window = 9, buckets = 10, quorum = 11, successes = 12, probes = 13, lease = 14,
  open = 15, open_max = 16, jitter = 17, rand = 18, known = 19}
local P = setmetatable({}, {__index = function(t, k)
  local i = PARAMS[k]
  local n = tonumber(ARGV[i])
  if n == nil or n ~= n or n == math.huge or n == -math.huge then
    error('BWARGS argument ' .. i .. ' (' .. k .. ') is not a finite number', 0)
  end
  if k == 'known' and n >= MAXGEN then
    -- no generation the store gave: an instance that adopted a corrupt one
    -- must not be held off by it once the state is repaired
    n = 0
  end
  rawset(t, k, n)
  return n
end})

local FIELDS = {'st', 'gen', 'fl', 'probe_at', 'trips', 'from', 'why', 'by', 'at',
  'ok', 'ko', 'cf', 'cfat', 'hs', 'tok', 'tko', 'tslow', 'tstale', 'pko', 'ren', 'rl', 'ri', 'fk', 'sk'}
local NF = #FIELDS
local TEXT = {st = true, from = true, why = true, by = true, rl = true, ri = true, fk = true, sk = true}
local STATES = {closed = true, open = true, half_open = true,
  forced_open = true, disabled = true}

local ST = {}
local CH = {}      -- fields changed by this script
local NCH = 0
local CHANGED = 0
local SEQ_FIELD = 'q.' .. INSTANCE
local LAST_SEQ = 0 -- the last flush sequence applied for INSTANCE
local CREATED = false

local function set(f, v)
  ST[f] = v
  if not CH[f] then CH[f] = true; NCH = NCH + 1 end
end

-- add adds to a count, which stays below 2^53 (only a count written by hand
-- gets there; it must not be made unreadable)
local function add(f, n)
  if n ~= 0 then set(f, math.min(ST[f] + n, MAXINT - 1)) end
end

local function fresh(gen)
  ST = {st = 'closed', gen = gen, fl = 1, probe_at = 0, trips = 0, from = 'closed',
    why = 'created', by = INSTANCE, at = NOW, ok = 0, ko = 0, cf = 0, cfat = 0,
    hs = 0, tok = 0, tko = 0, tslow = 0, tstale = 0, pko = 0, ren = 0, rl = '', ri = '', fk = '', sk = ''}
  for _, f in ipairs(FIELDS) do CH[f] = true end
  NCH = NF
  CREATED = true
end

local function corrupt(f, why)
  return 'BWCORRUPT state hash ' .. K_STATE .. ' field ' .. f .. ' ' .. why
end

-- count validates a non-negative integer below 2^53, written in decimal
-- digits only (tonumber also reads "1e3", "0x10" and " 7", which Go does not).
local function count(x)
  if type(x) == 'string' and not string.find(x, '^%d+$') then return nil end
  local n = tonumber(x)
  if n == nil or n ~= n or n < 0 or n >= MAXINT or n ~= math.floor(n) then
    return nil
  end
  return n
end

-- load_state reads the state hash, or starts a breaker when there is none.
-- A new breaker's generation is Redis's clock in ms (or past the one the
-- request knows), so generations keep growing when the keys expire or
-- Redis loses them. with_seq also reads this instance's last sequence.
local function load_state(with_seq)
  local v
  if with_seq then
    v = redis.call('HMGET', K_STATE, 'st', 'gen', 'fl', 'probe_at', 'trips', 'from', 'why',
      'by', 'at', 'ok', 'ko', 'cf', 'cfat', 'hs', 'tok', 'tko', 'tslow', 'tstale', 'pko', 'ren',
      'rl', 'ri', 'fk', 'sk', SEQ_FIELD)
  else
    v = redis.call('HMGET', K_STATE, 'st', 'gen', 'fl', 'probe_at', 'trips', 'from', 'why',
      'by', 'at', 'ok', 'ko', 'cf', 'cfat', 'hs', 'tok', 'tko', 'tslow', 'tstale', 'pko', 'ren', 'rl', 'ri',
      'fk', 'sk')
  end
  if v[1] == false and v[2] == false then
    -- No breaker yet, unless the key holds another program's hash: that is
    -- foreign data, left as it is.
    if redis.call('TYPE', K_STATE).ok == 'hash' then
      return 'BWCORRUPT state hash ' .. K_STATE .. ' holds no breaker (no field st, no field gen)'
    end
    fresh(math.max(NOW, P.known + 1))
    return nil
  end
  for i = 1, NF do
    local f, x = FIELDS[i], v[i]
    if x == false then
      if f == 'fl' or f == 'ren' then
        x = 0 -- absent from breakers written by older scripts
      elseif f == 'rl' or f == 'ri' or f == 'fk' or f == 'sk' then
        x = ''
      else
        return 'BWCORRUPT state hash ' .. K_STATE .. ' lacks field ' .. f
      end
    end
    if TEXT[f] then
      ST[f] = x
    else
      local n = count(x)
      if n == nil then return corrupt(f, 'is not an integer in [0, 2^53)') end
      ST[f] = n
    end
  end
  if not STATES[ST.st] then
    return corrupt('st', 'has unknown state ' .. ST.st)
  end
  if not STATES[ST.from] then
    return corrupt('from', 'has unknown state ' .. ST.from)
  end
  if ST.gen < 1 then return corrupt('gen', 'is not positive') end
  if ST.gen >= MAXGEN then return corrupt('gen', 'is 2^52 or more') end
  if ST.fl == 0 or ST.fl > ST.gen then ST.fl = ST.gen end
  -- rl, the current run of failures (record.lua): "time:count" entries
  -- separated by spaces, each number an integer in [0, 2^53).
  if ST.rl ~= '' then
    for e in string.gmatch(ST.rl, '%S+') do
      local tm, c = string.match(e, '^(%d+):(%d+)$')
      if not (tm and count(tm) and count(c)) then
        return corrupt('rl', 'is not a list of time:count entries')
      end
    end
  end
  if with_seq and v[NF + 1] then
    local n = count(v[NF + 1])
    if n == nil then return corrupt(SEQ_FIELD, 'is not an integer in [0, 2^53)') end
    LAST_SEQ = n
  end
  return nil
end

-- The window ring: bucket k holds index i (NOW / width); it is part of the
-- window while i > IDX - buckets.
local RING = {}
local IDX = 0
local SUM = {t = 0, f = 0, s = 0}
local WIN_DIRTY = false
local WIN_NEW = false

local function load_window()
  local buckets = P.buckets
  local width = math.max(1, math.floor(P.window / buckets))
  IDX = math.floor(NOW / width)
  local fields = {}
  for k = 0, buckets - 1 do
    fields[#fields + 1] = 'i' .. k
    fields[#fields + 1] = 't' .. k
    fields[#fields + 1] = 'f' .. k
    fields[#fields + 1] = 's' .. k
  end
  local v = redis.call('HMGET', K_WIN, unpack(fields))
  WIN_NEW = true
  for k = 0, buckets - 1 do
    local b = {}
    for j, f in ipairs({'i', 't', 'f', 's'}) do
      local x = v[k * 4 + j]
      local n = 0
      if x ~= false then
        WIN_NEW = false
        n = count(x)
        if n == nil then
          return 'BWCORRUPT window hash ' .. K_WIN .. ' field ' .. f .. k .. ' is not an integer in [0, 2^53)'
        end
      end
      b[f] = n
    end
    if b.i <= IDX - buckets or b.i > IDX then
      b = {i = -1, t = 0, f = 0, s = 0}
    end
    RING[k] = b
    SUM.t = SUM.t + b.t
    SUM.f = SUM.f + b.f
    SUM.s = SUM.s + b.s
  end
  return nil
end

local function window_add(calls, fails, slows)
  local k = IDX % P.buckets
  local b = RING[k]
  if b.i ~= IDX then
    SUM.t, SUM.f, SUM.s = SUM.t - b.t, SUM.f - b.f, SUM.s - b.s
    b = {i = IDX, t = 0, f = 0, s = 0}
    RING[k] = b
  end
  b.t = math.min(b.t + calls, MAXINT - 1)
  b.f = math.min(b.f + fails, MAXINT - 1)
  b.s = math.min(b.s + slows, MAXINT - 1)
  SUM.t = SUM.t + calls
  SUM.f = SUM.f + fails
  SUM.s = SUM.s + slows
  WIN_DIRTY = true
end

-- load reads what the script needs before anything is written, so that
-- foreign data stops a script before it changes a thing. The window is read
-- only when a rate policy is on, the troubled instances only under a quorum,
-- all keys when full (force, read); the leases' types are otherwise checked
-- by the commands that use them (WRONGTYPE).
local WINDOW_ON = false
local I_DIRTY, L_DIRTY = false, false
local function load(full, with_seq)
  local err = load_state(with_seq)
  if err then return err end
  if P.window < 1 or P.buckets < 1 or P.buckets > 1000 or P.buckets ~= math.floor(P.buckets) then
    return 'BWARGS window and buckets must be positive'
  end
  if full or P.rate > 0 or P.slow_rate > 0 then
    WINDOW_ON = true
    err = load_window()
    if err then return err end
  end
  -- A troubled instance's time, or a lease's expiry, far beyond now (+inf,
  -- say) would count an instance as troubled, or hold a probe's place, for
  -- ever. Each check reads the highest score (O(log n)) and fails with
  -- WRONGTYPE on foreign data.
  if full or P.quorum > 1 then
    local z = redis.call('ZRANGE', K_INST, -1, -1, 'WITHSCORES')
    if #z > 0 and not ((tonumber(z[2]) or math.huge) <= NOW + P.window) then
      return 'BWCORRUPT troubled zset ' .. K_INST .. ' member ' .. z[1] .. ' has time ' .. z[2] ..
        ', beyond now and the window'
    end
  end
  if full then
    local z = redis.call('ZRANGE', K_LEASE, -1, -1, 'WITHSCORES')
    if #z > 0 and not ((tonumber(z[2]) or math.huge) <= NOW + P.lease) then
      return 'BWCORRUPT lease zset ' .. K_LEASE .. ' member ' .. z[1] .. ' expires at ' .. z[2] ..
        ', beyond the probe lease'
    end
  end
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

-- announce asks reply() to publish the state it answers with: a
-- transition, or a generation moved on by the rollback rule.
local ANNOUNCE = false
local function announce()
  ANNOUNCE = true
end

-- transition moves the breaker to a new state under a new generation, clears
-- what belonged to the old one, and announces the change.
local function transition(to, why)
  set('from', ST.st)
  set('st', to)
  set('why', why)
  set('by', INSTANCE)
  set('at', NOW)
  set('gen', ST.gen + 1)
  set('fl', ST.gen)
  set('pko', ST.ko)
  set('ok', 0); set('ko', 0); set('cf', 0); set('cfat', 0); set('hs', 0); set('probe_at', 0)
  set('rl', '')
  set('ri', '')
  if to == 'open' then
    set('trips', math.min(ST.trips + 1, MAXINT - 1))
    set('probe_at', NOW + open_duration())
  elseif to == 'closed' or to == 'disabled' then
    set('trips', 0)
  end
  redis.call('DEL', K_WIN, K_INST, K_LEASE)
  if WINDOW_ON then
    for k = 0, P.buckets - 1 do RING[k] = {i = -1, t = 0, f = 0, s = 0} end
  end
  SUM.t, SUM.f, SUM.s = 0, 0, 0
  WIN_DIRTY = false
  CHANGED = 1
  announce()
end

-- catch_up applies the rollback rule: a request that knows a generation the
-- store has not reached moves the store's generation past it.
local function catch_up()
  local known = P.known
  if known > ST.gen then
    set('gen', known + 1)
    if CREATED then
      -- a breaker created by this request: nothing to announce yet
      return nil
    end
    CHANGED = 1
    announce()
  end
  return nil
end

-- forget_idle drops the fields of instances that have reported nothing for
-- the keys' idle expiry (an hour at least): q.<instance>, its last sequence
-- (its clock's µs), and t.<instance>, its floor (Redis's µs). Every process,
-- and every breaker a Group makes anew, reports as an instance of its own:
-- a breaker in use for months would otherwise keep them all. (Had the
-- breaker been idle that long, they would have expired with its keys.)
-- (A user whose ACL lacks HGETALL or HDEL, granted before they were used
-- here, keeps its breakers working: they then forget nothing.)
local function forget_idle(ttl)
  local old = NOW_US - math.max(ttl, 3600000) * 1000
  local all = redis.pcall('HGETALL', K_STATE)
  if type(all) ~= 'table' or all.err then return end
  local gone = {}
  for i = 1, #all, 2 do
    local f = all[i]
    local p = string.sub(f, 1, 2)
    if (p == 'q.' or p == 't.') and f ~= SEQ_FIELD and not CH[f] then
      local n = count(all[i + 1]) -- (a value that is not a count stays: it is an error to its instance)
      if n ~= nil and n < old then gone[#gone + 1] = f end
    end
  end
  for i = 1, #gone, 1000 do
    redis.pcall('HDEL', K_STATE, unpack(gone, i, math.min(i + 999, #gone)))
  end
end

-- save writes only what changed, and renews the idle expiry of the keys at
-- most once per eighth of it (and when a key is created), when it also
-- forgets idle instances.
local function save()
  -- sk is the breaker's key for its announcements (see reply): 40 hex
  -- digits, made when the breaker is, or when the field holds anything else.
  if not (#ST.sk == 40 and not string.find(ST.sk, '[^0-9a-f]')) then
    set('sk', redis.sha1hex(table.concat({NOW_US, ARGV[18], INSTANCE, NAME, ST.gen, ST.sk}, ' ')))
  end
  -- fk opens fast.lua's door: the generation while the breaker is closed
  -- with no failure outstanding, else empty.
  local fk = ''
  if ST.st == 'closed' and ST.cf == 0 and ST.rl == '' then fk = string.format('%d', ST.gen) end
  if fk ~= ST.fk then set('fk', fk) end
  local ttl = P.ttl
  local renew = ttl > 0 and (CREATED or NOW - ST.ren >= ttl / 8 or ARGV[33] == '1')
  if renew then
    set('ren', NOW)
    if not CREATED then forget_idle(ttl) end
  end
  if NCH > 0 then
    local args = {}
    for f in pairs(CH) do
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
  if ttl > 0 then
    if renew then
      redis.call('PEXPIRE', K_STATE, ttl)
      redis.call('PEXPIRE', K_WIN, ttl)
      redis.call('PEXPIRE', K_INST, ttl)
      redis.call('PEXPIRE', K_LEASE, ttl)
    else
      if WIN_DIRTY and WIN_NEW then redis.call('PEXPIRE', K_WIN, ttl) end
      if I_DIRTY then redis.call('PEXPIRE', K_INST, ttl) end
      if L_DIRTY then redis.call('PEXPIRE', K_LEASE, ttl) end
    end
  end
end

-- troubled_now counts the troubled instances in the window; they are
-- tracked only when a quorum is asked for.
local function troubled_now()
  if P.quorum <= 1 then return 0 end
  return troubled(NOW - P.window)
end

-- hmac returns HMAC-SHA1(key, msg) in hex, for a key of 40 lowercase hex
-- digits (field sk): its padded blocks come from tables of each digit
-- XOR 0x36 and XOR 0x5c, the 24 zero bytes of padding as '6' and '\\'.
-- The inner digest becomes bytes by arithmetic on its hex digits: a gsub
-- with a function per byte made it a large part of a transition's cost.
local function hmac(key, msg)
  local IPAD = {['0'] = '\6', ['1'] = '\7', ['2'] = '\4', ['3'] = '\5', ['4'] = '\2', ['5'] = '\3',
    ['6'] = '\0', ['7'] = '\1', ['8'] = '\14', ['9'] = '\15', ['a'] = '\87', ['b'] = '\84', ['c'] = '\85',
    ['d'] = '\82', ['e'] = '\83', ['f'] = '\80'}
  local OPAD = {['0'] = '\108', ['1'] = '\109', ['2'] = '\110', ['3'] = '\111', ['4'] = '\104',
    ['5'] = '\105', ['6'] = '\106', ['7'] = '\107', ['8'] = '\100', ['9'] = '\101', ['a'] = '\61',
    ['b'] = '\62', ['c'] = '\63', ['d'] = '\56', ['e'] = '\57', ['f'] = '\58'}
  local hex = redis.sha1hex(string.gsub(key, '.', IPAD) .. '666666666666666666666666' .. msg)
  -- the inner digest's bytes, from its hex digits ('0'-'9' are 48-57, 'a'-'f' 97-102)
  local d = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
  for i = 1, 20 do
    local hi, lo = string.byte(hex, 2 * i - 1, 2 * i)
    if hi > 57 then hi = hi - 87 else hi = hi - 48 end
    if lo > 57 then lo = lo - 87 else lo = lo - 48 end
    d[i] = hi * 16 + lo
  end
  return redis.sha1hex(string.gsub(key, '.', OPAD) .. '\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\' .. string.char(unpack(d)))
end

local function reply(verdict, wait, lease)
  if ST.st == 'open' then
    wait = math.max(0, ST.probe_at - NOW)
  elseif ST.st == 'forced_open' then
    wait = -1
  end
  local r = {verdict, ST.st, ST.gen, wait, ST.from, ST.why, ST.by, NOW - ST.at,
    ST.ok, ST.ko, ST.cf, ST.hs, SUM.t, SUM.f, SUM.s, troubled_now(),
    ST.tok, ST.tko, ST.tslow, ST.tstale, lease or '', CHANGED, ST.trips, ST.pko, NOW, NOW_US, ST.sk}
  if ANNOUNCE then
    -- The announcement: "<generation> <name>", then the state as this
    -- reply tells it (fields 2 to 20 and 23 to 26, space-separated), then
    -- HMAC-SHA1 of both lines keyed with sk, one line each. An instance
    -- that knows sk adopts the state at once; any other message is a hint
    -- to read the state.
    -- (Text goes in by concatenation: Lua's %s stops at a NUL byte.)
    local msg = string.format('%d ', ST.gen) .. NAME .. '\n' .. r[2] .. string.format(' %d %d ', r[3], r[4]) ..
      r[5] .. ' ' .. r[6] .. ' ' .. r[7] ..
      string.format(' %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d', r[8], r[9], r[10], r[11], r[12],
        r[13], r[14], r[15], r[16], r[17], r[18], r[19], r[20], r[23], r[24], r[25], r[26])
    redis.call('PUBLISH', CHANNEL, msg .. '\n' .. hmac(ST.sk, msg))
  end
  return r
end
