// Package fleet runs Redis in Docker containers for fleet tests, through
// testcontainers-go, so that a test can cut Redis off the way production
// loses it: stopped, paused (every call hangs) or disconnected from its
// network.
//
// No image is pulled. The Redis image is built locally, once per test
// binary, from the host's own redis-server: scripts/redis-rootfs.sh copies
// the binary, the libraries ldd lists and the dynamic loader into a build
// context, and deploy/redis/Dockerfile (FROM scratch) packs them. The same
// files build the redis service of docker-compose.yml.
//
// NewFront runs the example programs beside Redis: examples/downstream and
// instances of examples/service (StartServices), each in a container of its
// own, built once per test binary FROM scratch from a static binary (go
// build with CGO_ENABLED=0) and the Dockerfile of deploy/service or
// deploy/downstream. Services are on Redis's network and on a front network
// with the downstream, so that Service.Disconnect cuts one off Redis alone;
// each publishes its port on a fixed port of 127.0.0.1, through which the
// tests read its /status.
//
// Ryuk, testcontainers' reaper, needs an image that cannot be pulled here,
// so it must be off: TESTCONTAINERS_RYUK_DISABLED=true. The package sets it
// when it is unset and fails a test that runs with any other value.
// Containers and networks are removed by the test's cleanup instead.
//
// When no Docker engine answers, StartRedis skips the test, or fails it when
// BREAKWATER_REQUIRE_DOCKER is "1" (as `make test` sets it).
package fleet
