// Package linearizability checks that Breakwater's shared state is
// linearizable: instances run concurrent operations (acquire, record as
// batched flushes with sequence numbers, retried duplicates, the ages of
// their outcomes, settling times and the time through which failures
// settled, force, and reads) against one real redis-server, beside
// scenarios that take the consecutive-failures policy down each of its
// paths, and the history, with Redis's clock (µs) in every output, is
// checked with github.com/anishathalye/porcupine against a sequential model
// of the breaker that mirrors the Lua scripts (lua/), the fast script
// included: the model decides, from the stored state and the request (with
// the renewal of the keys' expiry each instance's store asks for), whether
// the fast script counts a record and the store answers in short, and a
// short answer, which carries no clock, bounds no clock in the check. A deliberately
// non-atomic record (read the state, then write it back in a second call)
// run with the same workload must fail the check.
//
// It is a module of its own so that porcupine stays out of the library's
// go.mod. There is no code here besides the tests.
package linearizability
