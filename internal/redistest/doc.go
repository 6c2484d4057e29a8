// Package redistest runs real redis-server processes for tests.
//
// Start launches one redis-server as a child process of the test binary on a
// free loopback port, with persistence off and its own temporary directory,
// and stops and reaps it when the test ends. StartCluster does the same for a
// Redis Cluster of several masters with the hash slots spread evenly, and
// StartClusterWithReplicas adds replicas in sync with each master;
// StartSentinel starts a master, its replica and sentinels monitoring them;
// StartTLS a server that speaks TLS only, with a CA and certificate that
// NewCerts generates. WaitFailover, on a cluster or a Sentinel deployment,
// waits until a killed master has been replaced.
//
// The returned servers can be stopped, restarted on the same port with empty
// data, frozen (SIGSTOP) so that every call times out, and paused with CLIENT
// PAUSE: the outages a shared breaker must survive. They can also go back in
// time: Save snapshots a server's data and RestartFrom restarts it from an
// older snapshot; StartReplica starts a replica whose link to its master
// Hold holds back, so that Promote makes a lagging replica the master.
//
// When redis-server is not on PATH, Start and StartCluster skip the test with
// a message saying how to install it. When the environment variable
// BREAKWATER_REQUIRE_REDIS is "1" (as `make test` sets it) they fail the test
// instead, so that a missing server can never pass for a green run.
package redistest
