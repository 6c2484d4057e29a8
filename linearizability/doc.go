// Package linearizability checks that Breakwater's shared state is
// linearizable: instances run concurrent operations (acquire, record as
// batched flushes with sequence numbers and retried duplicates, force, and
// reads) against one real redis-server, and the history, with Redis's clock
// in every output, is checked with github.com/anishathalye/porcupine against
// a sequential model of the breaker that mirrors the Lua scripts (lua/). A
// deliberately non-atomic record (read the state, then write it back in a
// second call) run with the same workload must fail the check.
//
// It is a module of its own so that porcupine stays out of the library's
// go.mod. There is no code here besides the tests.
package linearizability
