package faults_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

const (
	// storeTimeout is the stores' timeout.
	storeTimeout = 250 * time.Millisecond
	// callMargin is how much longer than the store's timeout a call may take
	// on a loaded machine.
	callMargin = 250 * time.Millisecond
	// maxSlowCalls is how many calls may exceed storeTimeout+callMargin: a
	// stalled machine must not fail the test, a bound that does not hold must.
	maxSlowCalls = 3
	// wait bounds every wait for something that should take milliseconds.
	wait = 10 * time.Second
	// instances is how many breakers share the state in each test.
	instances = 2
)

func TestMain(m *testing.M) {
	zerolog.SetGlobalLevel(zerolog.Disabled) // the toxics log through zerolog's global logger
	os.Exit(m.Run())
}

// degrade says whether a toxic must, must not, or may put the breakers on
// their fallback.
type degrade int

const (
	mustNot degrade = iota
	must
	may
)

func TestToxics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		toxic   string // Toxiproxy's JSON for the toxic
		degrade degrade
		why     string
	}{
		{"latency below the timeout",
			`{"type":"latency","stream":"downstream","attributes":{"latency":50,"jitter":10}}`, mustNot,
			"replies 50ms late: calls are slower, the shared state stays in use, every outcome counted"},
		{"latency above the timeout",
			`{"type":"latency","stream":"downstream","attributes":{"latency":1000}}`, must,
			"replies later than the store's timeout: calls end at the timeout, breakers fall back, outcomes sent reach Redis late"},
		{"black hole",
			`{"type":"timeout","stream":"upstream","attributes":{"timeout":0}}`, must,
			"requests vanish, connections stay open: calls end at the timeout, breakers fall back"},
		{"reset peer",
			`{"type":"reset_peer","stream":"upstream","attributes":{"timeout":0}}`, must,
			"connections reset at once: calls fail fast, breakers fall back"},
		{"slicer",
			`{"type":"slicer","stream":"downstream","attributes":{"average_size":3,"size_variation":2,"delay":50}}`, mustNot,
			"replies arrive a few bytes at a time: parsed whole, nothing changes"},
		{"bandwidth",
			`{"type":"bandwidth","stream":"downstream","attributes":{"rate":1}}`, may,
			"replies at 1 KB/s: slow calls end at the timeout at worst"},
	}
	for _, tt := range tests {
		tt := tt
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			t.Logf("%s", tt.why)
			runToxic(t, tt.toxic, tt.degrade)
		})
	}
}

// newProxy starts an in-process Toxiproxy in front of upstream.
func newProxy(t *testing.T, upstream string) *toxiproxy.Proxy {
	t.Helper()
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(server, "redis", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("toxiproxy: %v", err)
	}
	t.Cleanup(p.Stop)
	return p
}

// instance is one breaker through the proxy, with what it saw.
type instance struct {
	b          *breaker.Breaker
	mu         sync.Mutex
	degraded   bool
	fellBack   int    // StoreUnavailable events
	unreported uint64 // from StoreRecovered events
	done       atomic.Int64
}

func runToxic(t *testing.T, toxic string, want degrade) {
	srv := redistest.Start(t)
	proxy := newProxy(t, srv.Addr())
	name := "toxic"

	var insts []*instance
	for i := 0; i < instances; i++ {
		c := redis.NewClient(&redis.Options{Addr: proxy.Listen})
		t.Cleanup(func() { _ = c.Close() })
		st, err := store.New(c, store.Options{Prefix: "faults", Timeout: storeTimeout})
		if err != nil {
			t.Fatalf("store.New: %v", err)
		}
		t.Cleanup(func() { _ = st.Close() })
		b, err := breaker.New(name, st, breaker.Settings{ConsecutiveFailures: 1_000_000})
		if err != nil {
			t.Fatalf("breaker.New: %v", err)
		}
		t.Cleanup(func() { _ = b.Close() })
		in := &instance{b: b}
		b.Listen(func(e breaker.Event) {
			in.mu.Lock()
			defer in.mu.Unlock()
			switch e.Kind {
			case breaker.StoreUnavailable:
				in.degraded = true
				in.fellBack++
			case breaker.StoreRecovered:
				in.degraded = false
				in.unreported += e.Unreported
			}
		})
		insts = append(insts, in)
	}

	var slow, calls atomic.Int64
	timed := func(f func()) {
		start := time.Now()
		f()
		calls.Add(1)
		if time.Since(start) > storeTimeout+callMargin {
			slow.Add(1)
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	boom := errors.New("boom")
	for _, in := range insts {
		for g := 0; g < 2; g++ {
			wg.Add(1)
			go func(in *instance) {
				defer wg.Done()
				tick := time.NewTicker(5 * time.Millisecond)
				defer tick.Stop()
				for n := 0; ; n++ {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
					var p breaker.Permit
					var err error
					timed(func() { p, err = in.b.Allow(ctx) })
					if err != nil {
						continue
					}
					outcome := error(nil)
					if n%3 == 0 {
						outcome = boom
					}
					// Done reports even when ctx ends: the outcome counts.
					timed(func() { p.Done(context.Background(), outcome) })
					in.done.Add(1)
				}
			}(in)
		}
	}
	stopped := false
	stopTraffic := func() {
		if !stopped {
			stopped = true
			stop()
			wg.Wait()
		}
	}
	t.Cleanup(stopTraffic)

	<-time.After(300 * time.Millisecond) // traffic without the toxic
	if _, err := proxy.Toxics.AddToxicJson(strings.NewReader(toxic)); err != nil {
		t.Fatalf("add toxic %s: %v", toxic, err)
	}
	<-time.After(time.Second) // traffic through the toxic
	anyDegraded := func() bool {
		for _, in := range insts {
			in.mu.Lock()
			n := in.fellBack
			in.mu.Unlock()
			if n > 0 {
				return true
			}
		}
		return false
	}
	if want == must {
		deadline := time.Now().Add(wait)
		for !anyDegraded() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	fellBack := anyDegraded()
	proxy.Toxics.ResetToxics(context.Background())

	// Every instance follows the shared state again.
	deadline := time.Now().Add(wait)
	for {
		back := true
		for _, in := range insts {
			in.mu.Lock()
			back = back && !in.degraded
			in.mu.Unlock()
		}
		if back {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instances still on their fallback %v after the toxic was removed", wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
	<-time.After(300 * time.Millisecond) // traffic after the toxic
	stopTraffic()

	switch {
	case want == must && !fellBack:
		t.Errorf("no instance fell back to local decisions, want them to")
	case want == mustNot && fellBack:
		t.Errorf("instances fell back to local decisions, want them on the shared state throughout")
	}
	t.Logf("fell back: %v; %d calls (Allow and Done), %d over %v", fellBack, calls.Load(), slow.Load(), storeTimeout+callMargin)
	if n := slow.Load(); n > maxSlowCalls {
		t.Errorf("%d calls took longer than the store's timeout %v + %v, want at most %d", n, storeTimeout, callMargin, maxSlowCalls)
	}

	// No outcome lost, none counted twice: the shared totals hold every
	// outcome reported, at most all outcomes, and at least those the
	// instances did not say they failed to report.
	var made, unreported uint64
	for _, in := range insts {
		made += uint64(in.done.Load())
		in.mu.Lock()
		unreported += in.unreported
		in.mu.Unlock()
	}
	direct, err := store.New(srv.Client(t), store.Options{Prefix: "faults"})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	reader, err := breaker.New(name, direct, breaker.Settings{ConsecutiveFailures: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	var shared uint64
	deadline = time.Now().Add(wait)
	for {
		snap, err := reader.Snapshot(context.Background())
		if err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		shared = snap.Counts.TotalSuccesses + snap.Counts.TotalFailures
		if shared+unreported >= made || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("outcomes: %d made, %d in the shared totals, %d reported unreported", made, shared, unreported)
	if shared > made {
		t.Errorf("shared totals hold %d outcomes, more than the %d made: some were counted twice", shared, made)
	}
	if shared+unreported < made {
		t.Errorf("shared totals hold %d outcomes and %d were reported unreported, of %d made: some were lost", shared, unreported, made)
	}
	if want == mustNot && shared != made {
		t.Errorf("shared totals hold %d outcomes, want all %d made", shared, made)
	}
}
