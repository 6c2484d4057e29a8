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

// Cluster is a Redis Cluster of redis-server child processes owned by one
// test: masters, and the replicas of StartClusterWithReplicas.
type Cluster struct {
	nodes    []*Server
	replicas [][]*Server // replicas[i]: the replicas of nodes[i]
}

// StartCluster starts masters redis-server child processes with cluster mode
// on, each on its own free ports of 127.0.0.1 with its own nodes.conf,
// assigns the hash slots to them in equal ranges, joins them and returns
// once every node reports cluster_state:ok. The nodes are killed and reaped
// when the test ends. The skip-or-fail rule for a missing redis-server is
// Start's.
func StartCluster(tb testing.TB, masters int) *Cluster {
	tb.Helper()
	return startCluster(tb, masters, 0)
}

// StartClusterWithReplicas starts a cluster as StartCluster does, with
// replicas replicas of each master, and returns once every replica is in
// sync with its master and every node reports cluster_state:ok. A master
// killed with Stop is replaced by one of its replicas after the cluster
// node timeout (2s): see WaitFailover.
func StartClusterWithReplicas(tb testing.TB, masters, replicas int) *Cluster {
	tb.Helper()
	if replicas < 0 {
		tb.Fatalf("redistest: StartClusterWithReplicas(replicas=%d): want >= 0", replicas)
	}
	return startCluster(tb, masters, replicas)
}

func startCluster(tb testing.TB, masters, replicas int) *Cluster {
	tb.Helper()
	if masters < 1 || masters > clusterSlots {
		tb.Fatalf("redistest: StartCluster(masters=%d): want between 1 and %d masters", masters, clusterSlots)
	}
	bin := lookup(tb)
	c := &Cluster{replicas: make([][]*Server, masters)}
	// Replicas sync at once, not after the default 5s wait for more.
	args := []string{"--repl-diskless-sync-delay", "0"}
	for i := 0; i < masters; i++ {
		c.nodes = append(c.nodes, start(tb, bin, true, args))
	}
	for i := 0; i < masters; i++ {
		for j := 0; j < replicas; j++ {
			c.replicas[i] = append(c.replicas[i], start(tb, bin, true, args))
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	all := c.all()
	admin := make([]*redis.Client, len(all))
	for i, n := range all {
		admin[i] = adminClient(n)
		defer admin[i].Close()
	}
	// Distinct config epochs before the nodes meet, as redis-cli --cluster
	// create sets them. Left at 0, the nodes resolve the collision by
	// bumping epochs over the following seconds, and a master killed before
	// its replica heard of its latest epoch is never failed over: the other
	// masters deny the replica's vote request as stale ("slot epoch > reqEpoch").
	for i, a := range admin {
		if err := a.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			tb.Fatalf("redistest: CLUSTER SET-CONFIG-EPOCH %d on %s: %v", i+1, all[i].Addr(), err)
		}
	}
	for i := 0; i < masters; i++ {
		first, last := slotRange(i, masters)
		if err := admin[i].ClusterAddSlotsRange(ctx, first, last).Err(); err != nil {
			tb.Fatalf("redistest: assign slots %d-%d to %s: %v", first, last, c.nodes[i].Addr(), err)
		}
	}
	for _, n := range all[1:] {
		if err := admin[0].Do(ctx, "CLUSTER", "MEET", "127.0.0.1", n.port, n.busPort).Err(); err != nil {
			tb.Fatalf("redistest: join %s to %s: %v", n.Addr(), c.nodes[0].Addr(), err)
		}
	}
	for i, rs := range c.replicas {
		for _, r := range rs {
			if err := replicate(ctx, r, c.nodes[i]); err != nil {
				tb.Fatalf("redistest: make %s a replica of %s: %v", r.Addr(), c.nodes[i].Addr(), err)
			}
		}
	}
	if err := waitClusterOK(ctx, admin, len(all)); err != nil {
		tb.Fatalf("redistest: cluster of %d masters and %d replicas: %v", masters, len(all)-masters, err)
	}
	return c
}

// all returns the masters, then the replicas.
func (c *Cluster) all() []*Server {
	all := append([]*Server(nil), c.nodes...)
	for _, rs := range c.replicas {
		all = append(all, rs...)
	}
	return all
}

func adminClient(s *Server) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DisableIdentity: true,
		TLSConfig: s.tlsConfig(), Password: s.password()})
}

// replicate makes r a replica of master, once r has learnt of master
// through the cluster's gossip, and waits until r is in sync.
func replicate(ctx context.Context, r, master *Server) error {
	ra, ma := adminClient(r), adminClient(master)
	defer ra.Close()
	defer ma.Close()
	id, err := ma.ClusterMyID(ctx).Result()
	if err != nil {
		return fmt.Errorf("CLUSTER MYID: %w", err)
	}
	err = poll(ctx, func() error {
		if err := ra.ClusterReplicate(ctx, id).Err(); err != nil {
			return fmt.Errorf("CLUSTER REPLICATE: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return poll(ctx, func() error {
		info, err := ra.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if got := parseInfo(info)["master_link_status"]; got != "up" {
			return fmt.Errorf("master_link_status:%s, want up", got)
		}
		return nil
	})
}

// poll calls f every pollInterval until it returns nil or ctx ends, and
// returns f's last error then.
func poll(ctx context.Context, f func() error) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%v)", err, ctx.Err())
		case <-tick.C:
		}
	}
}

// Replicas returns the replicas of master i (in the order of Nodes), as
// they were started; after a failover, one of them is the master.
func (c *Cluster) Replicas(i int) []*Server {
	return append([]*Server(nil), c.replicas[i]...)
}

// WaitFailover waits until a replica of master i (which the test killed)
// has taken its place: the replica reports role:master and every running
// node reports cluster_state:ok with all slots served. It returns the new
// master.
func (c *Cluster) WaitFailover(tb testing.TB, i int, timeout time.Duration) *Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var promoted *Server
	err := poll(ctx, func() error {
		promoted = nil
		for _, r := range c.replicas[i] {
			if !r.running() {
				continue
			}
			a := adminClient(r)
			info, err := a.Info(ctx, "replication").Result()
			a.Close()
			if err == nil && parseInfo(info)["role"] == "master" {
				promoted = r
			}
		}
		if promoted == nil {
			return fmt.Errorf("no replica of master %d is master yet", i)
		}
		for _, n := range c.all() {
			if !n.running() {
				continue
			}
			a := adminClient(n)
			info, err := a.ClusterInfo(ctx).Result()
			a.Close()
			if err != nil {
				return fmt.Errorf("%s: CLUSTER INFO: %w", n.Addr(), err)
			}
			got := parseInfo(info)
			if got["cluster_state"] != "ok" || got["cluster_slots_ok"] != strconv.Itoa(clusterSlots) {
				return fmt.Errorf("%s: cluster_state:%s cluster_slots_ok:%s", n.Addr(), got["cluster_state"], got["cluster_slots_ok"])
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("redistest: failover of master %d within %v: %v", i, timeout, err)
	}
	return promoted
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
			notReady = epochsAgree(ctx, admin)
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

// epochsAgree reports an error unless every node lists the same config epoch
// for every node in CLUSTER NODES, so that a replica asking for votes after
// its master dies names the epoch the other masters know.
func epochsAgree(ctx context.Context, admin []*redis.Client) error {
	var first map[string]string
	var firstAddr string
	for _, a := range admin {
		out, err := a.ClusterNodes(ctx).Result()
		if err != nil {
			return fmt.Errorf("%s: CLUSTER NODES: %w", a.Options().Addr, err)
		}
		epochs := make(map[string]string)
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 8 {
				continue
			}
			epochs[f[0]] = f[6]
		}
		if first == nil {
			first, firstAddr = epochs, a.Options().Addr
			continue
		}
		for id, e := range first {
			if epochs[id] != e {
				return fmt.Errorf("%s lists config epoch %q for node %s, %s lists %q", a.Options().Addr, epochs[id], id, firstAddr, e)
			}
		}
	}
	return nil
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

// Addrs returns the masters' addresses, in the order of their slot ranges.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Nodes returns the cluster's masters as started, in the order of their
// slot ranges, so that a test can stop, restart, freeze or pause one of
// them.
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
