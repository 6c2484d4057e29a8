package clustertest

// Fleet tests of the breaker go here: several breaker.Breaker instances, each
// with its own go-redis client, sharing the Redis of fleet.StartRedis (one
// container per test), checking what DESIGN.md promises a fleet:
//
//   - failures counted across instances open the breaker for all of them;
//   - an instance that joins late learns the state from Redis, and every
//     instance hears transitions over pub/sub;
//   - half-open admits one probe for the whole fleet, and a crashed prober's
//     lease expires;
//   - Redis paused, stopped or disconnected costs one timeout, then each
//     instance falls back as configured and says so in an event;
//   - after Redis comes back (Unpause, Start with empty data, Connect) the
//     instances resubscribe and re-read the shared state.
