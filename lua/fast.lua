-- fast.lua: the common report, counted the cheap way. A batch of successes
-- only, of the generation the instance knows, for a breaker that is closed
-- with no failure outstanding: the full script (record.lua) would add them
-- to two counts and note the sequence, and so does this one, without the
-- prelude. It stands alone, takes four arguments and reads six fields.
--
-- The door is field fk of the state hash, which every full script keeps
-- (lib.lua's save): the generation while the breaker is closed with no
-- failure counted or outstanding, else empty. The store sends a batch here
-- only when the breaker's policy has no rate and no quorum (they need the
-- window and the troubled instances) and no renewal of the keys' expiry is
-- due; anything this script does not count it leaves untouched and answers
-- 0, and the store then sends the batch to the full script, which answers
-- in full (a duplicate, a transition, foreign data: all of it there).
--
-- KEYS[1] state hash
-- ARGV[1] instance id   ARGV[2] the generation the batch was admitted under,
--         the one the instance knows   ARGV[3] successes (> 0)
--         ARGV[4] sequence number (> 0)
-- Reply: 1 counted (the breaker is closed at generation ARGV[2]); 0 not
-- counted here, nothing changed.
local key, q = KEYS[1], 'q.' .. ARGV[1]
local f = redis.call('HMGET', key, 'fk', q, 'ok', 'tok', 'gen', 'st')
-- the door, and the two fields it stands for that the fast path decides
-- on: foreign data in them goes to the full script, which names it
if f[1] ~= ARGV[2] or f[5] ~= ARGV[2] or f[6] ~= 'closed' or not (f[3] and f[4]) then return 0 end
local last = f[2] or '0'
-- decimal digits only, as lib.lua's count(); counts below 10^15, so that
-- they stay below 2^53 however long the breaker lives; sequences (µs
-- since 1970, 16 digits) below 2^53
if string.find(last .. f[3] .. f[4], '%D') or #last > 16 or #f[3] > 15 or #f[4] > 15 then
  return 0
end
local seq, n, lastn = tonumber(ARGV[4]), tonumber(ARGV[3]), tonumber(last)
if not (seq and n and lastn < 9007199254740992 and seq > lastn and seq < 9007199254740992
    and n > 0 and n < 1e15) then
  return 0
end
redis.call('HSET', key, 'ok', string.format('%d', tonumber(f[3]) + n),
  'tok', string.format('%d', tonumber(f[4]) + n), q, ARGV[4])
return 1
