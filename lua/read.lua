-- read.lua: the breaker's state as the fleet sees it, with its window. It
-- creates the breaker when there is none, so that a reader learns the
-- generation that outcomes must carry, and applies the rollback rule (see
-- lib.lua); it never changes an existing breaker's state otherwise. Plain
-- reads that decide nothing use HMGET instead (store.Read).
--
-- KEYS, common ARGV and reply: see lib.lua. Verdict: "ok".

local err = load(true, false) or catch_up()
if err then return redis.error_reply(err) end
save()
return reply('ok', 0, '')
