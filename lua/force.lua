-- force.lua: an operator's command for the whole fleet.
--   open    hold the breaker open (forced_open) until closed or reset; with
--           a duration, open it as a trip would, for that long: it then
--           half-opens and probes as usual
--   close   close it, clearing its counts
--   disable let every call through and trip on nothing (disabled)
--   reset   start afresh: clear counts, totals, windows and leases; closed.
--           Reset also repairs keys that hold data this layout does not know.
-- A command that finds the breaker already in its target state changes
-- nothing (no new generation, no announcement), except reset and a timed open.
--
-- KEYS, common ARGV and reply: see lib.lua.
-- ARGV[20] the command   ARGV[21] open: duration in ms (0 = until closed)
-- Verdict: "ok".

local action = ARGV[20]

if action == 'reset' then
  local ok, g = pcall(redis.call, 'HGET', K_STATE, 'gen')
  local ok2, s = pcall(redis.call, 'HGET', K_STATE, 'st')
  local old = (ok and count(g)) or 0
  if old >= MAXGEN then old = 0 end
  redis.call('DEL', K_STATE, K_WIN, K_INST, K_LEASE)
  local known = count(ARGV[19]) or 0
  if known >= MAXGEN then known = 0 end
  fresh(math.max(NOW, old + 1, known + 1) - 1)
  if ok2 and s and STATES[s] then ST.st = s end
  WINDOW_ON = true
  local _ = load_window()
  transition('closed', 'reset')
  save()
  return reply('ok', 0, '')
end

local err = load(true, false) or catch_up()
if err then return redis.error_reply(err) end

local targets = {open = 'forced_open', close = 'closed', disable = 'disabled'}
local reasons = {open = 'forced_open', close = 'forced_close', disable = 'disabled'}
local to = targets[action]
if to == nil then
  return redis.error_reply('BWARGS unknown force command ' .. tostring(action))
end
local dur = 0
if action == 'open' then
  dur = count(ARGV[21] or '0')
  if dur == nil then
    return redis.error_reply('BWARGS open duration is not a count of ms')
  end
end
if dur > 0 then
  local trips = ST.trips
  transition('open', 'forced_open')
  set('probe_at', NOW + dur)
  set('trips', trips) -- an operator's open is not a trip
elseif ST.st ~= to then
  transition(to, reasons[action])
end
save()
return reply('ok', 0, '')
