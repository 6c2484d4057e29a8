// Package store keeps Breakwater's shared breaker state in Redis. It is the
// only package that talks to Redis: keys, script calls, reply parsing and
// pub/sub. It works with any redis.UniversalClient (a single node, Sentinel
// or Cluster): all keys of one breaker share the hash tag {<prefix>:<name>},
// so every script touches one Cluster slot.
//
// Keys, for breaker name in a store with prefix p:
//
//	{p:name}:v1:state   hash: state, generation, counts, totals
//	{p:name}:v1:win     hash: the sliding window's buckets
//	{p:name}:v1:inst    zset: instances reporting failures or slow calls
//	{p:name}:v1:lease   zset: half-open probe leases
//
// and for a fleet-wide retry budget (Store.RetryBudget) of that name:
//
//	{p:retry:name}:v1:win   hash: requests and retries in the sliding window
//
// v1 is the layout version: a deploy that changes the layout changes it, so
// old and new instances never read each other's keys. Every write renews the
// keys' idle expiry. Transitions are announced on the channel p:v1:events as
// "<generation> <name>"; subscribers re-read the state, never trusting the
// message.
//
// Every Redis call is bounded by Options.Timeout. A store that fails to reach
// Redis fails fast with ErrUnavailable for Options.Cooldown, then lets one
// call try again, so a dead Redis costs one timeout per cooldown, not one per
// call. Meanwhile one goroutine per store probes Redis every 50 to 100 ms
// (a PING on a connection of its own, dialled with the client's Dialer) and
// ends the cooldown as soon as Redis answers, so breakers follow the shared
// state again within about a probe of Redis's return. A refused login is
// not probed: it waits out the cooldown.
//
// Errors of Redis calls are *Error values that say the cause in words:
// connection refused, no such host, TLS handshake failed, authentication
// failed, denied by the ACL, timeout, loading its dataset, cluster down.
// They match ErrUnavailable (Redis away or not serving; a refused login
// too) or ErrDenied (credentials or ACL), and never contain the client's
// password. go-redis may hide a refused dial behind the call's deadline (it
// dials on a goroutine of its own): the first error of an outage then says
// timeout, and the probe finds the cause for the errors of the calls that
// follow.
//
// go-redis logs failed dials of its connection pools ("failed to dial
// after 5 attempts") through its global logger, on stderr by default.
// Breakwater leaves that logger alone: a library must not change global
// state that its user may have set, and go-redis offers no way to read it,
// nor a logger per client. What Breakwater does is dial little: the cooldown
// stops its calls from dialling, and the probe dials outside the pool,
// which logs nothing; an outage costs one line, plus one per Cooldown while
// it lasts (and a line per attempt to resubscribe). To silence go-redis,
// call redis.SetLogger with a logger of your own (for example one that
// drops or forwards those lines) when the program starts.
package store
