package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name under which the sentinels of StartSentinel
// monitor the master.
const SentinelMaster = "breakwater"

// sentinelTimeout bounds the wait for a new Sentinel deployment to agree.
const sentinelTimeout = 30 * time.Second

// Sentinel is a master, its replica and the sentinels that monitor them,
// all redis-server child processes owned by one test.
type Sentinel struct {
	master, replica *Server
	sentinels       []*Server
}

// StartSentinel starts a master, one replica in sync with it and sentinels
// sentinels (quorum: a majority) monitoring them as SentinelMaster. The
// sentinels hold the master down after 1s without an answer and fail over
// to the replica. It returns once every sentinel knows the master, the
// replica and the other sentinels. Everything is killed and reaped when
// the test ends.
func StartSentinel(tb testing.TB, sentinels int) *Sentinel {
	tb.Helper()
	if sentinels < 1 {
		tb.Fatalf("redistest: StartSentinel(sentinels=%d): want at least 1", sentinels)
	}
	bin := lookup(tb)
	// Replicas sync at once, not after the default 5s wait for more.
	nodelay := []string{"--repl-diskless-sync-delay", "0"}
	d := &Sentinel{master: start(tb, bin, false, nodelay)}
	d.replica = start(tb, bin, false, append(nodelay, "--replicaof", "127.0.0.1", strconv.Itoa(d.master.port)))
	ctx, cancel := context.WithTimeout(context.Background(), sentinelTimeout)
	defer cancel()
	ra := adminClient(d.replica)
	defer ra.Close()
	err := poll(ctx, func() error {
		info, err := ra.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if got := parseInfo(info)["master_link_status"]; got != "up" {
			return fmt.Errorf("replica's master_link_status:%s, want up", got)
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("redistest: replica %s of %s: %v", d.replica.Addr(), d.master.Addr(), err)
	}
	quorum := sentinels/2 + 1
	for i := 0; i < sentinels; i++ {
		d.sentinels = append(d.sentinels, startSentinel(tb, bin, d.master.port, quorum))
	}
	for _, s := range d.sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DisableIdentity: true})
		err := poll(ctx, func() error {
			m, err := sc.Master(ctx, SentinelMaster).Result()
			if err != nil {
				return err
			}
			if m["num-slaves"] != "1" || m["num-other-sentinels"] != strconv.Itoa(sentinels-1) {
				return fmt.Errorf("sentinel sees %s replicas and %s other sentinels, want 1 and %d",
					m["num-slaves"], m["num-other-sentinels"], sentinels-1)
			}
			return nil
		})
		sc.Close()
		if err != nil {
			tb.Fatalf("redistest: sentinel %s: %v", s.Addr(), err)
		}
	}
	return d
}

// startSentinel starts one sentinel monitoring the master on masterPort.
func startSentinel(tb testing.TB, bin string, masterPort, quorum int) *Server {
	tb.Helper()
	dir := tb.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf(`sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d
sentinel down-after-milliseconds %[1]s 1000
sentinel failover-timeout %[1]s 10000
sentinel parallel-syncs %[1]s 1
`, SentinelMaster, masterPort, quorum)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		tb.Fatalf("redistest: write %s: %v", conf, err)
	}
	s := &Server{tb: tb, bin: bin, dir: dir, conf: conf}
	tb.Cleanup(func() {
		s.Stop()
		if tb.Failed() {
			s.logTail()
		}
	})
	var err error
	for attempt := 0; attempt < startAttempts; attempt++ {
		if s.port, err = freePort(); err != nil {
			break
		}
		if err = s.launch(); err == nil || !errorsIsAddrInUse(err) {
			break
		}
	}
	if err != nil {
		tb.Fatalf("redistest: start sentinel: %v", err)
	}
	return s
}

// Master returns the master as started; after a failover it is the replica.
func (d *Sentinel) Master() *Server { return d.master }

// Replica returns the replica as started.
func (d *Sentinel) Replica() *Server { return d.replica }

// SentinelAddrs returns the sentinels' addresses.
func (d *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(d.sentinels))
	for i, s := range d.sentinels {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Client returns a failover client (go-redis's NewFailoverClient) for the
// master, closed when the test ends; opts may change its options.
func (d *Sentinel) Client(tb testing.TB, opts ...func(*redis.FailoverOptions)) *redis.Client {
	tb.Helper()
	o := &redis.FailoverOptions{MasterName: SentinelMaster, SentinelAddrs: d.SentinelAddrs()}
	for _, opt := range opts {
		opt(o)
	}
	c := redis.NewFailoverClient(o)
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// WaitFailover waits until every sentinel names the replica as the master
// and the replica reports role:master.
func (d *Sentinel) WaitFailover(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	want := d.replica.Addr()
	err := poll(ctx, func() error {
		for _, s := range d.sentinels {
			sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DisableIdentity: true})
			addr, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
			sc.Close()
			if err != nil {
				return fmt.Errorf("sentinel %s: %w", s.Addr(), err)
			}
			if got := net.JoinHostPort(addr[0], addr[1]); got != want {
				return fmt.Errorf("sentinel %s names %s as master, want %s", s.Addr(), got, want)
			}
		}
		ra := adminClient(d.replica)
		defer ra.Close()
		info, err := ra.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if got := parseInfo(info)["role"]; got != "master" {
			return fmt.Errorf("replica reports role:%s, want master", got)
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("redistest: sentinel failover within %v: %v", timeout, err)
	}
}

func errorsIsAddrInUse(err error) bool { return errors.Is(err, errAddrInUse) }
