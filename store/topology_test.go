package store_test

// Breakers on a Redis Cluster whose master is killed mid-traffic, and on a
// Sentinel deployment whose master is killed: no panic, no call much longer
// than the store's timeout, every instance back on the shared state soon
// after the failover completes.

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

const (
	// topologyTimeout is the stores' timeout in the topology tests.
	topologyTimeout = 250 * time.Millisecond
	// callMargin is how much longer than the store's timeout a call may
	// take on a loaded machine (scheduling, the breaker's own work).
	callMargin = 250 * time.Millisecond
	// maxSlowCalls is how many calls out of thousands may exceed
	// topologyTimeout+callMargin: a stalled machine must not fail the test,
	// a call bound that does not hold must.
	maxSlowCalls = 3
	// backAfterFailover bounds the time from a completed failover to every
	// instance following the shared state again.
	backAfterFailover = 2 * time.Second
	// failoverWait bounds the failover itself (Redis's business).
	failoverWait = 30 * time.Second
)

// fleetUnderTest is instances breakers, each with its own client and store,
// all on one breaker, with steady traffic.
type fleetUnderTest struct {
	t         *testing.T
	breakers  []*breaker.Breaker
	mu        sync.Mutex
	degraded  []bool      // per instance, from StoreUnavailable / StoreRecovered
	recovered []time.Time // per instance, when it last heard StoreRecovered
	calls     atomic.Int64
	slow      atomic.Int64
	slowest   atomic.Int64 // ns
	panics    atomic.Int64
	stop      context.CancelFunc
	wg        sync.WaitGroup
}

func startFleet(t *testing.T, instances int, client func() redis.UniversalClient) *fleetUnderTest {
	t.Helper()
	f := &fleetUnderTest{t: t, degraded: make([]bool, instances), recovered: make([]time.Time, instances)}
	ctx, cancel := context.WithCancel(context.Background())
	f.stop = cancel
	for i := 0; i < instances; i++ {
		st, err := store.New(client(), store.Options{Prefix: "topo", Timeout: topologyTimeout})
		if err != nil {
			t.Fatalf("store.New: %v", err)
		}
		t.Cleanup(func() { _ = st.Close() })
		b, err := breaker.New("payments", st, breaker.Settings{ConsecutiveFailures: 1000})
		if err != nil {
			t.Fatalf("breaker.New: %v", err)
		}
		t.Cleanup(func() { _ = b.Close() })
		i := i
		b.Listen(func(e breaker.Event) {
			f.mu.Lock()
			defer f.mu.Unlock()
			switch e.Kind {
			case breaker.StoreUnavailable:
				f.degraded[i] = true
			case breaker.StoreRecovered:
				f.degraded[i] = false
				f.recovered[i] = time.Now()
			}
		})
		f.breakers = append(f.breakers, b)
		// Two callers per instance, one call every 2ms each, success and
		// failure alternating.
		for g := 0; g < 2; g++ {
			f.wg.Add(1)
			go f.traffic(ctx, b)
		}
	}
	t.Cleanup(f.close)
	return f
}

func (f *fleetUnderTest) traffic(ctx context.Context, b *breaker.Breaker) {
	defer f.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			f.panics.Add(1)
			f.t.Errorf("panic in a call: %v", r)
		}
	}()
	boom := errors.New("boom")
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		f.timed(func() {
			p, err := b.Allow(ctx)
			if err != nil {
				return
			}
			f.timed(func() {
				if n%2 == 0 {
					p.Done(ctx, nil)
				} else {
					p.Done(ctx, boom)
				}
			})
		})
	}
}

// timed runs one call (Allow, or Done) and counts it when it took longer
// than the store's timeout and the margin.
func (f *fleetUnderTest) timed(call func()) {
	start := time.Now()
	call()
	d := time.Since(start)
	f.calls.Add(1)
	if d > topologyTimeout+callMargin {
		f.slow.Add(1)
	}
	for {
		s := f.slowest.Load()
		if int64(d) <= s || f.slowest.CompareAndSwap(s, int64(d)) {
			break
		}
	}
}

func (f *fleetUnderTest) close() {
	f.stop()
	f.wg.Wait()
}

// waitDegraded waits until some instance has lost the store.
func (f *fleetUnderTest) waitDegraded() {
	f.t.Helper()
	deadline := time.Now().Add(failoverWait)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		for _, d := range f.degraded {
			if d {
				f.mu.Unlock()
				return
			}
		}
		f.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	f.t.Fatalf("no instance lost the store within %v of the master's death", failoverWait)
}

// checkBack asserts that every instance follows the shared state within
// backAfterFailover of done, and reports when each came back.
func (f *fleetUnderTest) checkBack(done time.Time) {
	f.t.Helper()
	deadline := done.Add(backAfterFailover)
	for {
		f.mu.Lock()
		var late []int
		var back []time.Duration
		for i, d := range f.degraded {
			switch {
			case d:
				late = append(late, i)
			case f.recovered[i].After(done):
				back = append(back, f.recovered[i].Sub(done))
			default:
				back = append(back, 0)
			}
		}
		f.mu.Unlock()
		if len(late) == 0 {
			sort.Slice(back, func(i, j int) bool { return back[i] < back[j] })
			f.t.Logf("instances back on shared state after the failover completed: %v", back)
			break
		}
		if time.Now().After(deadline.Add(failoverWait)) {
			f.t.Fatalf("instances %v still not on shared state %v after the failover completed", late, time.Since(done))
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i, r := range f.recovered {
		if r.After(deadline) {
			f.t.Errorf("instance %d back on shared state %v after the failover completed, want <= %v", i, r.Sub(done), backAfterFailover)
		}
	}
	// Every instance reads the shared state from the new master.
	for i, b := range f.breakers {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := b.Snapshot(ctx); err != nil {
			f.t.Errorf("instance %d: Snapshot after the failover: %v", i, err)
		}
		cancel()
	}
}

func (f *fleetUnderTest) checkCalls() {
	f.t.Helper()
	f.close()
	calls, slow := f.calls.Load(), f.slow.Load()
	f.t.Logf("%d calls, %d over %v, slowest %v", calls, slow, topologyTimeout+callMargin, time.Duration(f.slowest.Load()))
	if calls < 1000 {
		f.t.Errorf("only %d calls were made, want thousands", calls)
	}
	if slow > maxSlowCalls {
		f.t.Errorf("%d calls took longer than the store's timeout %v + %v, want at most %d", slow, topologyTimeout, callMargin, maxSlowCalls)
	}
}

func TestClusterMasterKilledMidTraffic(t *testing.T) {
	t.Parallel()
	began := time.Now()
	cl := redistest.StartClusterWithReplicas(t, 3, 1)
	t.Logf("cluster of 3 masters and 3 replicas up in %v", time.Since(began))
	f := startFleet(t, 3, func() redis.UniversalClient { return cl.Client(t) })

	// Kill the master of the breaker's slot once traffic runs.
	probe := cl.Client(t)
	ctx := context.Background()
	st, err := store.New(probe, store.Options{Prefix: "topo"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := probe.MasterForKey(ctx, st.Keys("payments")[0])
	if err != nil {
		t.Fatalf("MasterForKey: %v", err)
	}
	victim := -1
	for i, n := range cl.Nodes() {
		if n.Addr() == m.Options().Addr {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatalf("the breaker's master %s is none of %v", m.Options().Addr, cl.Addrs())
	}
	time.Sleep(300 * time.Millisecond) // traffic before the kill
	cl.Nodes()[victim].Stop()          // SIGKILL
	killed := time.Now()
	f.waitDegraded()
	cl.WaitFailover(t, victim, failoverWait)
	t.Logf("failover completed %v after the kill", time.Since(killed))
	f.checkBack(time.Now())
	f.checkCalls()
}

func TestSentinelMasterKilledMidTraffic(t *testing.T) {
	t.Parallel()
	began := time.Now()
	d := redistest.StartSentinel(t, 3)
	t.Logf("master, replica and 3 sentinels up in %v", time.Since(began))
	f := startFleet(t, 3, func() redis.UniversalClient { return d.Client(t) })
	time.Sleep(300 * time.Millisecond) // traffic before the kill
	d.Master().Stop()                  // SIGKILL
	killed := time.Now()
	f.waitDegraded()
	d.WaitFailover(t, failoverWait)
	t.Logf("failover completed %v after the kill", time.Since(killed))
	f.checkBack(time.Now())
	f.checkCalls()
}
