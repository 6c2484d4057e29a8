package store

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// keyRoles describe a breaker's keys, in the order of Keys: what each holds
// and the Redis type it must be.
var keyRoles = [4]struct{ what, typ string }{
	{"state hash", "hash"}, {"window hash", "hash"}, {"troubled zset", "zset"}, {"lease zset", "zset"},
}

// nameWrongType returns err, an error of a call about the named breaker,
// as an error that names the key of the wrong type when err is Redis's
// WRONGTYPE, which names none. It asks Redis for the keys' types (one round
// trip, on this error path only); when that fails, err is returned as it is.
func (s *Store) nameWrongType(name string, err error) error {
	if err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		return err
	}
	keys := s.Keys(name)
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	pipe := s.client.Pipeline()
	cmds := make([]*redis.StatusCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Type(ctx, k)
	}
	_, _ = pipe.Exec(ctx)
	for i, c := range cmds {
		typ, e := c.Result()
		if e == nil && typ != "none" && typ != keyRoles[i].typ {
			return fmt.Errorf("%w: %s %s holds a %s, want a %s (WRONGTYPE)",
				ErrCorrupt, keyRoles[i].what, keys[i], typ, keyRoles[i].typ)
		}
	}
	return err
}

// msDuration converts ms to a Duration, saturating instead of overflowing:
// a breaker opened until the far future (a probe time near 2^53 ms) waits
// the longest Duration, never a negative one.
func msDuration(ms int64) time.Duration {
	const most = math.MaxInt64 / int64(time.Millisecond)
	switch {
	case ms > most:
		return math.MaxInt64
	case ms < -most:
		return math.MinInt64
	}
	return time.Duration(ms) * time.Millisecond
}
