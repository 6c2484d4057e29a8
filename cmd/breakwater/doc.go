// Command breakwater operates a fleet's shared circuit breakers: it lists
// them with their state and counts, follows their transitions live, and
// opens, closes, resets or disables one for the whole fleet.
//
// Install it with
//
//	go install github.com/breakwater-go/breakwater/cmd/breakwater@latest
//
// Usage:
//
//	breakwater [flags] status [PATTERN]       a table of the breakers (--json for scripts)
//	breakwater [flags] watch [PATTERN]        a live feed of transitions
//	breakwater [flags] open NAME [--for D]    reject every call, fleet-wide (for D, then half-open)
//	breakwater [flags] close NAME             close, clearing the counts
//	breakwater [flags] reset NAME             start afresh (also repairs corrupt keys)
//	breakwater [flags] disable NAME           let every call through, never trip
//
// PATTERN is a Redis glob over breaker names (* any run of characters, ?
// one character, [abc] one of a set, \ escapes); the default is *. Flags
// may come before or after the command and its arguments.
//
// Flags of every command:
//
//	--redis URL      the Redis of the breakers (default $REDIS_URL, else redis://localhost:6379)
//	--prefix P       the key prefix of the breakers' store (default "breakwater")
//	--timeout D      bounds each command's Redis calls, not watch's feed (default 10s),
//	                 whatever the URL's read_timeout
//	--color WHEN     auto (on a terminal, unless $NO_COLOR is set), always or never
//
// status: --json prints a JSON array instead of the table; --window and
// --buckets give the breakers' Settings.Window and WindowBuckets (defaults
// 60s and 10), which the store does not keep, to count the sliding window.
// FAILURES and CALLS are those of the sliding window when the breaker keeps
// one (a rate policy is on), else those since the last transition.
//
// open, close, reset, disable: --create acts on a breaker the store does not
// hold yet (without it such a name is an error: a typo must not open a new
// breaker); --as ID records ID as the instance that made the change
// (default breakwater-cli:USER@HOST). Each prints what changed, e.g.
//
//	payments: closed -> forced-open (generation 1764319891234 -> 1764319891235)
//
// # Redis URLs
//
// The forms of --redis and $REDIS_URL; a password is never printed:
//
//	redis://[[user]:password@]host[:port][/db][?opts]       one node (go-redis ParseURL)
//	rediss://...                                            the same over TLS
//	unix://[[user]:password@]/path/to/redis.sock[?db=N]     one node over a Unix socket
//	redis+sentinel://[[user]:password@]host:port[,host:port...][/db]?master_name=NAME[&password=P]
//	                                                        Sentinel: the userinfo is the sentinels',
//	                                                        password= the master's (go-redis ParseFailoverURL)
//	rediss+sentinel://...                                   the same over TLS
//	redis+cluster://[[user]:password@]host:port[,host:port...][?opts]
//	                                                        Cluster seeds (go-redis ParseClusterURL)
//	rediss+cluster://...                                    the same over TLS
//	host:port,host:port[,...]                               Cluster seeds, no password
//	host:port                                               one node, no password
//
// opts are go-redis's URL options (dial_timeout=3s, ...); the comma-separated
// hosts of the sentinel and cluster forms become its addr= options.
//
// # Exit codes
//
//	0  success
//	1  any other error
//	2  usage: unknown command or flag, missing or extra argument, bad URL
//	3  Redis unreachable (or refusing the connection: authentication, TLS)
//	4  unknown breaker: the store holds no breaker of that name
//	5  bad pattern
//	6  corrupt keys: a breaker's keys hold data this layout does not know
//	   (status lists what it can read; reset repairs them)
//
// A command that runs out of --timeout waiting on Redis exits with 3. SIGINT
// and SIGTERM end any command at once, even one waiting on a Redis that
// does not answer, with exit 1 (0 for a watch that follows the feed).
package main
