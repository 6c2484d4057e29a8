// Package clustertest holds the fleet tests of Breakwater: several breaker
// instances sharing one Redis that runs in a Docker container, which the
// tests stop, pause and cut off the network (see internal/fleet); and the
// fleet as deployed, each instance of examples/service in a container of its
// own beside Redis and examples/downstream, which the tests fail, heal, cut
// off Redis and restart one by one (services_test.go).
//
// It is a module of its own because testcontainers-go needs a newer Go than
// the library's go.mod promises; a replace directive points it at the
// library in the parent directory. Run it with `make test`, or alone with
//
//	cd cluster_test && TESTCONTAINERS_RYUK_DISABLED=true go test -race ./...
package clustertest
