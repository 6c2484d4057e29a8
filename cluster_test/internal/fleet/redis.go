package fleet

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	dnetwork "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

// RequireDockerEnv names the environment variable that turns an unreachable
// Docker engine from a skipped test into a failed one when set to "1".
const RequireDockerEnv = "BREAKWATER_REQUIRE_DOCKER"

// ryukEnv must be "true": the reaper's image cannot be pulled.
const ryukEnv = "TESTCONTAINERS_RYUK_DISABLED"

// Alias is the name under which Redis is reachable from other containers on
// its network (see Redis.NetworkAddr).
const Alias = "redis"

const (
	// redisPort is the port Redis listens on inside its container.
	redisPort = "6379/tcp"
	// startAttempts bounds the retries when the chosen host port was taken.
	startAttempts = 5
	// opTimeout bounds each Docker operation and each wait for Redis.
	opTimeout = 60 * time.Second
)

func init() {
	// testcontainers reads its configuration once, on first use; set the
	// variable before that when the environment leaves it out.
	if _, ok := os.LookupEnv(ryukEnv); !ok {
		os.Setenv(ryukEnv, "true")
	}
}

// Redis is a redis-server in a Docker container owned by one test, on a
// network of its own, with its port published on a fixed port of 127.0.0.1
// that survives Stop/Start and Disconnect/Connect. Its methods report
// failures with testing.TB.Fatal and must be called from the test's
// goroutine.
type Redis struct {
	tb   testing.TB
	ctr  *testcontainers.DockerContainer
	cli  client.APIClient
	net  *testcontainers.DockerNetwork
	port int

	mu           sync.Mutex
	disconnected bool
}

// StartRedis builds the Redis image if this test binary has not yet, starts
// a container from it on a new network and returns once Redis answers PING
// through the published port. Extra args are appended to redis-server's
// command line. The container and the network are removed when the test
// ends.
//
// StartRedis skips the test when no Docker engine answers, or fails it when
// BREAKWATER_REQUIRE_DOCKER is "1".
func StartRedis(tb testing.TB, args ...string) *Redis {
	tb.Helper()
	p := provider(tb)
	requireRedisServer(tb)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := buildImage(ctx, p); err != nil {
		tb.Fatal(err)
	}

	nw, err := network.New(ctx)
	testcontainers.CleanupNetwork(tb, nw)
	if err != nil {
		tb.Fatalf("fleet: create network: %v", err)
	}

	cmd := append([]string{"--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"}, args...)
	r := &Redis{tb: tb, cli: p.Client(), net: nw}
	for attempt := 0; attempt < startAttempts; attempt++ {
		if r.port, err = freePort(); err != nil {
			break
		}
		r.ctr, err = testcontainers.Run(ctx, Image,
			testcontainers.WithExposedPorts(redisPort),
			testcontainers.WithCmd(cmd...),
			network.WithNetwork([]string{Alias}, nw),
			testcontainers.WithHostConfigModifier(r.bindPort),
			testcontainers.WithWaitStrategy(wait.ForLog("Ready to accept connections").WithStartupTimeout(opTimeout)),
		)
		testcontainers.CleanupContainer(tb, r.ctr)
		if err == nil || !portTaken(err) {
			break
		}
	}
	if err != nil {
		tb.Fatalf("fleet: start %s: %v", Image, err)
	}
	r.waitPing(ctx)
	return r
}

// provider returns a Docker provider whose engine answers, or skips or
// fails the test.
func provider(tb testing.TB) *testcontainers.DockerProvider {
	tb.Helper()
	if v := os.Getenv(ryukEnv); v != "true" {
		tb.Fatalf("fleet: %s=%q, want \"true\": the reaper's image cannot be pulled; containers are removed by the tests' cleanup", ryukEnv, v)
	}
	p, err := testcontainers.NewDockerProvider()
	if err == nil {
		tb.Cleanup(func() { _ = p.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = p.Health(ctx)
	}
	if err == nil {
		return p
	}
	if os.Getenv(RequireDockerEnv) == "1" {
		tb.Fatalf("fleet: no Docker engine reachable and %s=1: %v", RequireDockerEnv, err)
	}
	tb.Skipf("fleet: no Docker engine reachable (%v); start Docker, or run make test %s=0 to skip the fleet tests", err, RequireDockerEnv)
	return nil
}

// bindPort publishes Redis on r.port of 127.0.0.1. A fixed host port keeps
// the address stable when Docker re-creates the binding after Start or
// Connect.
func (r *Redis) bindPort(hc *container.HostConfig) {
	hc.PortBindings = dnetwork.PortMap{
		dnetwork.MustParsePort(redisPort): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(r.port)}},
	}
}

// freePort returns a port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portTaken reports whether err says the host port was taken.
func portTaken(err error) bool {
	s := err.Error()
	return strings.Contains(s, "port is already allocated") || strings.Contains(s, "address already in use")
}

// waitPing polls Redis through the published port until it answers PING.
func (r *Redis) waitPing(ctx context.Context) {
	r.tb.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:                  r.Addr(),
		MaxRetries:            -1,
		PoolSize:              1,
		DisableIdentity:       true,
		ContextTimeoutEnabled: true,
	})
	defer c.Close()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := c.Ping(pctx).Err()
		cancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			r.tb.Fatalf("fleet: redis on %s does not answer PING: %v", r.Addr(), err)
		case <-tick.C:
		}
	}
}

// Addr returns Redis's address on the host, "127.0.0.1:<port>". It stays the
// same across Stop/Start and Disconnect/Connect.
func (r *Redis) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
}

// Network returns the name of Redis's network, for containers that should
// reach it (see NetworkAddr).
func (r *Redis) Network() string {
	return r.net.Name
}

// NetworkAddr returns Redis's address for containers on its network,
// "redis:6379".
func (r *Redis) NetworkAddr() string {
	return net.JoinHostPort(Alias, "6379")
}

// Client returns a client for Redis on the host, closed when the test ends.
// The options start from go-redis's defaults with Addr set; opts may change
// them.
func (r *Redis) Client(tb testing.TB, opts ...func(*redis.Options)) *redis.Client {
	tb.Helper()
	o := &redis.Options{Addr: r.Addr()}
	for _, opt := range opts {
		opt(o)
	}
	c := redis.NewClient(o)
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop stops the container (SIGTERM, then SIGKILL after timeout). Redis
// keeps nothing: Start brings back an empty server.
func (r *Redis) Stop(timeout time.Duration) {
	r.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := r.ctr.Stop(ctx, &timeout); err != nil {
		r.tb.Fatalf("fleet: stop redis on %s: %v", r.Addr(), err)
	}
}

// Start starts a stopped container again and returns once Redis answers on
// the same address.
func (r *Redis) Start() {
	r.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := r.ctr.Start(ctx); err != nil {
		r.tb.Fatalf("fleet: start redis on %s: %v", r.Addr(), err)
	}
	r.waitPing(ctx)
}

// Pause freezes every process of the container (docker pause): connections
// stay open and nothing is answered, so every call runs into its timeout.
func (r *Redis) Pause() {
	r.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := r.cli.ContainerPause(ctx, r.ctr.GetContainerID(), client.ContainerPauseOptions{}); err != nil {
		r.tb.Fatalf("fleet: pause redis on %s: %v", r.Addr(), err)
	}
}

// Unpause resumes a container frozen by Pause.
func (r *Redis) Unpause() {
	r.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := r.cli.ContainerUnpause(ctx, r.ctr.GetContainerID(), client.ContainerUnpauseOptions{}); err != nil {
		r.tb.Fatalf("fleet: unpause redis on %s: %v", r.Addr(), err)
	}
}

// Disconnect takes the container off its network: Redis keeps running with
// its data, but neither the host nor other containers reach it. Connect
// undoes it.
func (r *Redis) Disconnect() {
	r.tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.disconnected {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := r.cli.NetworkDisconnect(ctx, r.net.ID, client.NetworkDisconnectOptions{Container: r.ctr.GetContainerID(), Force: true})
	if err != nil {
		r.tb.Fatalf("fleet: disconnect redis on %s: %v", r.Addr(), err)
	}
	r.disconnected = true
}

// Connect puts a disconnected container back on its network, under the same
// alias and host port, and returns once Redis answers through it.
func (r *Redis) Connect() {
	r.tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.disconnected {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := r.cli.NetworkConnect(ctx, r.net.ID, client.NetworkConnectOptions{
		Container:      r.ctr.GetContainerID(),
		EndpointConfig: &dnetwork.EndpointSettings{Aliases: []string{Alias}},
	})
	if err != nil {
		r.tb.Fatalf("fleet: connect redis on %s: %v", r.Addr(), err)
	}
	r.disconnected = false
	r.waitPing(ctx)
}
