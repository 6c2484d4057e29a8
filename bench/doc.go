// Package bench measures the cost of a call through a circuit breaker shared
// over Redis, side by side with the anchors it is compared with:
// sony/gobreaker's in-process CircuitBreaker and its Redis-backed
// DistributedCircuitBreaker.
//
// Everything here is in tests. BenchmarkBreakers runs every breaker against
// one real redis-server, started as a child process of the test binary, and
// reports for each call its time, its allocations, the Redis commands it
// sent (cmds/op) and the time Redis spent executing them (redis-us/op).
// TestCommandsPerCall checks the command counts, so that plain go test keeps
// the benchmarks honest. Run them with
//
//	make bench
//
// or, in this directory, go test -run '^$' -bench . -benchtime 1s.
//
// This is a module of its own so that the anchors' dependencies stay out of
// the library's go.mod.
package bench
