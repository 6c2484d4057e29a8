-- fast.lua: the common case of record.lua, before the prelude: a batch of
-- successes only, of the generation the instance knows, for a closed
-- breaker with no run of failures, no rate policy and no quorum, when the
-- instance does not ask for the keys' expiry to be renewed. It reads eight
-- fields with one HMGET, writes the three that change with one HSET, and
-- answers in short: the instance already holds everything else of the
-- reply. Anything else (or a value it does not recognise) falls through to
-- the full script, which answers in full.
--
-- KEYS, ARGV: see lib.lua and record.lua; ARGV[33] is 1 when the instance
-- asks for the idle expiry to be renewed (the full script does it).
-- Short reply: 1 "counted"   2 "closed"   3 generation
do
  local A = ARGV
  local ok, window, buckets = tonumber(A[23]), tonumber(A[9]), tonumber(A[10])
  -- a batch of successes only has no run of failures either, and window and
  -- buckets are in range: else the full script reports them (BWARGS)
  if A[6] == '0' and A[7] == '0' and A[11] == '1' and A[21] == '' and A[24] == '0'
      and A[25] == '0' and A[26] == '0' and A[27] == '0' and A[28] == '0' and A[33] == '0'
      and ok and ok > 0 and ok < 1e15 and window and window >= 1 and buckets and buckets >= 1
      and buckets <= 1000 and buckets == math.floor(buckets) then
    local f = redis.call('HMGET', KEYS[1], 'st', 'gen', 'fl', 'rl', 'cf', 'q.' .. A[3], 'ok', 'tok')
    -- the values it uses as numbers: decimal digits only, as lib.lua's count()
    local digits = f[2] and f[3] and f[7] and f[8] and (f[6] == false or not string.find(f[6], '%D'))
      and not string.find(f[2] .. f[3] .. f[7] .. f[8], '%D')
    if digits and f[1] == 'closed' and f[2] == A[19] and f[5] == '0' and (f[4] == false or f[4] == '') then
      local gen, fl, last = tonumber(f[2]), tonumber(f[3]), tonumber(f[6] or '0')
      local okc, tokc = tonumber(f[7]), tonumber(f[8])
      local rgen, seq = tonumber(A[20]), tonumber(A[22])
      if gen and fl and last and okc and tokc and rgen and seq
          and gen < 1e15 and fl >= 1 and fl <= gen and okc < 1e15 and tokc < 1e15
          and okc == math.floor(okc) and tokc == math.floor(tokc) and okc >= 0 and tokc >= 0
          and (rgen == 0 or (rgen >= fl and rgen <= gen)) and seq > last then
        redis.call('HSET', KEYS[1], 'ok', string.format('%d', okc + ok), 'tok', string.format('%d', tokc + ok),
          'q.' .. A[3], string.format('%d', seq))
        return {'counted', 'closed', gen}
      end
    end
  end
end
