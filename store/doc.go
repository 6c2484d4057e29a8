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
// call.
package store
