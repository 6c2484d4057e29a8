package store_test

// How soon breakers follow the shared state again once Redis answers after
// an outage, measured in real time over many outages.

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

const (
	// outages is how many outages each recovery test measures.
	outages = 20
	// maxRecoveryP99 bounds the 99th percentile of the time from Redis
	// answering again to a breaker following the shared state again.
	maxRecoveryP99 = 500 * time.Millisecond
	// outageLength is how long each outage lasts: several probes long.
	outageLength = 300 * time.Millisecond
)

func TestBackOnSharedStateSoonAfterRedisAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		down, up    func(*redistest.Server)
		description string
		maxP99      time.Duration
	}{
		{"SIGSTOP", (*redistest.Server).Freeze, (*redistest.Server).Thaw, "frozen with SIGSTOP, resumed with SIGCONT", maxRecoveryP99},
		// A killed server fails the pool's dials. After PoolSize failed
		// dials (over the process's life) a go-redis pool stops dialing
		// and tries again once a second in the background, so about one
		// outage in PoolSize waits up to a second more, whatever the
		// store does.
		{"kill and restart", (*redistest.Server).Stop, (*redistest.Server).Restart, "killed, restarted empty on the same port", maxRecoveryP99 + time.Second},
	}
	for _, tt := range tests {
		tt := tt
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := measureRecoveries(t, tt.down, tt.up)
			sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
			p50, p99 := got[len(got)/2], got[(len(got)*99+99)/100-1]
			t.Logf("Redis %s %d times: back on shared state after p50 %v, p99 %v, max %v (all: %v)",
				tt.description, len(got), p50, p99, got[len(got)-1], got)
			if p99 > tt.maxP99 {
				t.Errorf("p99 time back on shared state = %v, want <= %v", p99, tt.maxP99)
			}
		})
	}
}

// measureRecoveries runs a breaker with steady traffic through outages
// made by down and ended by up, and returns, for each, the time from up's
// return (Redis answers again) to the breaker's StoreRecovered event.
func measureRecoveries(t *testing.T, down, up func(*redistest.Server)) []time.Duration {
	srv := redistest.Start(t)
	st, err := store.New(srv.Client(t), store.Options{Prefix: "recovery"})
	if err != nil {
		t.Fatalf("store.New: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	b, err := breaker.New("recovery", st, breaker.Settings{})
	if err != nil {
		t.Fatalf("breaker.New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })

	type event struct {
		kind breaker.EventKind
		at   time.Time
	}
	events := make(chan event, 1024)
	stopListen := b.Listen(func(e breaker.Event) {
		if e.Kind != breaker.StateChanged {
			events <- event{e.Kind, time.Now()}
		}
	})
	defer stopListen()

	// Steady traffic: a call every 5ms, as a busy instance makes.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if p, err := b.Allow(ctx); err == nil {
				p.Done(ctx, nil)
			}
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	wait := func(kind breaker.EventKind) time.Time {
		t.Helper()
		timeout := time.After(fleetWait)
		for {
			select {
			case e := <-events:
				if e.kind == kind {
					return e.at
				}
			case <-timeout:
				t.Fatalf("no %v event within %v", kind, fleetWait)
			}
		}
	}

	var got []time.Duration
	for i := 0; i < outages; i++ {
		down(srv)
		wait(breaker.StoreUnavailable)
		<-time.After(outageLength)
		up(srv)
		answered := time.Now()
		// A restarted server answers a little before Restart's readiness
		// poll sees it, and the breaker may be back first: that counts as 0.
		got = append(got, max(0, wait(breaker.StoreRecovered).Sub(answered)))
	}
	return got
}
