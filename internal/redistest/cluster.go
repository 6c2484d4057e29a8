package redistest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// clusterTimeout bounds the wait for a new cluster to agree that it is up.
const clusterTimeout = 30 * time.Second

// Cluster is a Redis Cluster of redis-server child processes, all masters,
// owned by one test.
type Cluster struct {
	nodes []*Server
}

// StartCluster starts masters redis-server child processes with cluster mode
// on, each on its own free ports of 127.0.0.1 with its own nodes.conf,
// assigns the hash slots to them in equal ranges, joins them and returns
// once every node reports cluster_state:ok. The nodes are killed and reaped
// when the test ends. The skip-or-fail rule for a missing redis-server is
// Start's.
func StartCluster(tb testing.TB, masters int) *Cluster {
	tb.Helper()
	if masters < 1 || masters > clusterSlots {
		tb.Fatalf("redistest: StartCluster(masters=%d): want between 1 and %d masters", masters, clusterSlots)
	}
	bin := lookup(tb)
	c := &Cluster{}
	for i := 0; i < masters; i++ {
		c.nodes = append(c.nodes, start(tb, bin, true, nil))
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	admin := make([]*redis.Client, masters)
	for i, n := range c.nodes {
		admin[i] = redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1, DisableIdentity: true})
		defer admin[i].Close()
	}
	for i, a := range admin {
		first, last := slotRange(i, masters)
		if err := a.ClusterAddSlotsRange(ctx, first, last).Err(); err != nil {
			tb.Fatalf("redistest: assign slots %d-%d to %s: %v", first, last, c.nodes[i].Addr(), err)
		}
	}
	for _, n := range c.nodes[1:] {
		if err := admin[0].Do(ctx, "CLUSTER", "MEET", "127.0.0.1", n.port, n.busPort).Err(); err != nil {
			tb.Fatalf("redistest: join %s to %s: %v", n.Addr(), c.nodes[0].Addr(), err)
		}
	}
	if err := waitClusterOK(ctx, admin, masters); err != nil {
		tb.Fatalf("redistest: cluster of %d masters: %v", masters, err)
	}
	return c
}

// slotRange returns the first and last slot of master i of n.
func slotRange(i, n int) (first, last int) {
	return i * clusterSlots / n, (i+1)*clusterSlots/n - 1
}

// waitClusterOK polls every node until each one knows all n nodes, sees all
// slots assigned and reports the cluster as ok.
func waitClusterOK(ctx context.Context, admin []*redis.Client, n int) error {
	want := map[string]string{
		"cluster_state":          "ok",
		"cluster_known_nodes":    strconv.Itoa(n),
		"cluster_slots_assigned": strconv.Itoa(clusterSlots),
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var notReady error
		for _, a := range admin {
			info, err := a.ClusterInfo(ctx).Result()
			if err != nil {
				notReady = fmt.Errorf("%s: CLUSTER INFO: %w", a.Options().Addr, err)
				break
			}
			got := parseInfo(info)
			for k, v := range want {
				if got[k] != v {
					notReady = fmt.Errorf("%s: got %s:%s, want %s", a.Options().Addr, k, got[k], v)
					break
				}
			}
			if notReady != nil {
				break
			}
		}
		if notReady == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready within %v: %w", clusterTimeout, notReady)
		case <-tick.C:
		}
	}
}

// parseInfo parses "key:value" lines of an INFO-style reply.
func parseInfo(info string) map[string]string {
	m := make(map[string]string)
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok {
			m[k] = v
		}
	}
	return m
}

// Addrs returns the nodes' addresses, in the order of their slot ranges.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Nodes returns the cluster's nodes, in the order of their slot ranges, so
// that a test can stop, restart, freeze or pause one of them.
func (c *Cluster) Nodes() []*Server {
	return append([]*Server(nil), c.nodes...)
}

// Client returns a cluster client for the nodes, closed when the test ends.
// The options start from go-redis's defaults with Addrs set; opts may change
// them.
func (c *Cluster) Client(tb testing.TB, opts ...func(*redis.ClusterOptions)) *redis.ClusterClient {
	tb.Helper()
	o := &redis.ClusterOptions{Addrs: c.Addrs()}
	for _, opt := range opts {
		opt(o)
	}
	cc := redis.NewClusterClient(o)
	tb.Cleanup(func() { _ = cc.Close() })
	return cc
}
