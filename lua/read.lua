-- read.lua: the breaker's state as the fleet sees it. It creates the
-- breaker when there is none, so that a reader learns the generation that
-- outcomes must carry. It never changes an existing breaker's state.
--
-- KEYS, common ARGV and reply: see lib.lua. Verdict: "ok".

local err = load(true)
if err then return redis.error_reply(err) end
save()
return reply('ok', 0, '')
