-- force.lua: an operator's command for the whole fleet.
--   open    hold the breaker open (forced_open) until closed or reset
--   close   close it, clearing its counts
--   disable let every call through and trip on nothing (disabled)
--   reset   start afresh: clear counts, totals, windows and leases; closed.
--           Reset also repairs keys that hold data this layout does not know.
-- A command that finds the breaker already in its target state changes
-- nothing (no new generation, no announcement), except reset.
--
-- KEYS, common ARGV and reply: see lib.lua.
-- ARGV[19] the command. Verdict: "ok".
-- ARGV[20] (optional, open only) an open duration in ms: when above 0, open
--   moves the breaker to the ordinary open state (reason forced_open) with
--   its next probe that long from now, so that it half-opens by itself. It
--   always makes a transition, and does not count as a trip.

local action = ARGV[19]
local perr = load_params()
if perr then return redis.error_reply(perr) end
local open_for = tonumber(ARGV[20] or '0')
if open_for == nil or open_for < 0 then
  return redis.error_reply('BWARGS argument 20 (open duration) is not a number >= 0')
end

if action == 'reset' then
  local ok, g = pcall(redis.call, 'HGET', K_STATE, 'gen')
  local ok2, s = pcall(redis.call, 'HGET', K_STATE, 'st')
  local old = (ok and tonumber(g)) or 0
  redis.call('DEL', K_STATE, K_WIN, K_INST, K_LEASE)
  fresh(math.max(NOW, old + 1) - 1)
  if ok2 and s and STATES[s] then ST.st = s end
  WINDOW_ON = true
  local _ = load_window()
  transition('closed', 'reset')
  save()
  return reply('ok', 0, '')
end

local err = load(true)
if err then return redis.error_reply(err) end

local targets = {open = 'forced_open', close = 'closed', disable = 'disabled'}
local reasons = {open = 'forced_open', close = 'forced_close', disable = 'disabled'}
local to = targets[action]
if to == nil then
  return redis.error_reply('BWARGS unknown force command ' .. tostring(action))
end
if action == 'open' and open_for > 0 then
  local trips = ST.trips
  transition('open', 'forced_open')
  ST.trips = trips
  ST.probe_at = NOW + math.floor(open_for)
elseif ST.st ~= to then
  transition(to, reasons[action])
end
save()
return reply('ok', 0, '')
