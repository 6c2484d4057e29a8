package bench

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
)

// fleetSize is how many instances the convergence benchmarks run.
const fleetSize = 20

// BenchmarkConvergence measures, per trip, the time from the tripping
// outcome (before Done) until every one of 20 instances rejects calls
// (each has adopted the open state); BenchmarkPublish20 measures a raw
// PUBLISH reaching 20 subscribers on the same server. Both report p50 and
// p99 over their iterations (run them with -benchtime 200x or more). Each
// starts its next iteration as soon as every instance (subscriber) heard
// the last one: here, once every instance's listener heard the breaker
// closed again.
func BenchmarkConvergence(b *testing.B) {
	srv := startRedis(b)
	e := newEnv(b, srv)
	s := breaker.Settings{ConsecutiveFailures: 1, OpenDuration: time.Hour}
	fleet := make([]*breaker.Breaker, fleetSize)
	var mu sync.Mutex
	var opened map[int]time.Time
	allOpen := make(chan struct{}, 1)
	closed := make(chan struct{}, fleetSize) // an instance heard the breaker closed
	for i := range fleet {
		si := s
		si.Instance = fmt.Sprintf("pod-%02d", i)
		fleet[i] = e.instance(false, si)
		i := i
		fleet[i].Listen(func(ev breaker.Event) {
			if ev.Kind == breaker.StateChanged && ev.To == breaker.Closed {
				closed <- struct{}{} // (one per instance and round: never more than fleetSize wait)
				return
			}
			if ev.Kind != breaker.StateChanged || ev.To != breaker.Open {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if opened == nil {
				return
			}
			if _, seen := opened[i]; !seen {
				opened[i] = time.Now()
				if len(opened) == fleetSize {
					allOpen <- struct{}{}
				}
			}
		})
	}
	ctx := context.Background()
	closeAll := func() {
		open := 0
		for _, in := range fleet {
			if in.State() != breaker.Closed {
				open++
			}
		}
		if err := fleet[0].ForceClose(ctx); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for ; open > 0; open-- {
			select {
			case <-closed:
			case <-time.After(time.Until(deadline)):
				b.Fatalf("%d instances did not hear the breaker closed within 10s", open)
			}
		}
		for _, in := range fleet {
			if in.State() != breaker.Closed {
				b.Fatalf("%s: %v after every instance heard the breaker closed", in.Instance(), in.State())
			}
		}
	}
	// Every instance learns the breaker first.
	for _, in := range fleet {
		if _, err := breaker.Execute(ctx, in, succeedCtx); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		closeAll()
		mu.Lock()
		opened = map[int]time.Time{}
		mu.Unlock()
		tripper := fleet[n%fleetSize]
		b.StartTimer()
		began := time.Now()
		if _, err := breaker.Execute(ctx, tripper, failCtx); !errors.Is(err, errBoom) {
			b.Fatalf("tripping call: %v", err)
		}
		select {
		case <-allOpen:
		case <-time.After(10 * time.Second):
			b.Fatalf("trip %d: not every instance heard within 10s", n)
		}
		mu.Lock()
		var last time.Time
		for _, t := range opened {
			if t.After(last) {
				last = t
			}
		}
		opened = nil
		mu.Unlock()
		lat = append(lat, last.Sub(began))
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

// BenchmarkPublish20 measures a PUBLISH reaching 20 subscribers, each on
// its own connection, on the server the breakers use.
func BenchmarkPublish20(b *testing.B) {
	srv := startRedis(b)
	e := newEnv(b, srv)
	ctx := context.Background()
	channel := e.prefix + ":raw"
	got := make(chan time.Time, fleetSize)
	for i := 0; i < fleetSize; i++ {
		ps := e.client(false).Subscribe(ctx, channel)
		if _, err := ps.Receive(ctx); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = ps.Close() })
		go func(ch <-chan *redis.Message) {
			for range ch {
				got <- time.Now()
			}
		}(ps.Channel())
	}
	pub := e.client(false)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		began := time.Now()
		if err := pub.Publish(ctx, channel, "x").Err(); err != nil {
			b.Fatal(err)
		}
		var last time.Time
		for i := 0; i < fleetSize; i++ {
			select {
			case t := <-got:
				if t.After(last) {
					last = t
				}
			case <-time.After(10 * time.Second):
				b.Fatalf("publish %d: not every subscriber heard within 10s", n)
			}
		}
		lat = append(lat, last.Sub(began))
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	at := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.ReportMetric(float64(at(0.50).Microseconds()), "p50-us")
	b.ReportMetric(float64(at(0.99).Microseconds()), "p99-us")
}

// TestCommandsAt100kCallsPerSecond: a closed breaker called 100,000 times a
// second for a second sends at most 0.01 Redis commands per call.
func TestCommandsAt100kCallsPerSecond(t *testing.T) {
	srv := startRedis(t)
	e := newEnv(t, srv)
	b := e.instance(true, breaker.Settings{})
	ctx := context.Background()
	for i := 0; i < warmup; i++ {
		if _, err := breaker.Execute(ctx, b, succeedCtx); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	e.cmds.n.Store(0)
	const perMs = 100
	began := time.Now()
	calls := 0
	for ms := 1; ms <= 1000; ms++ {
		for i := 0; i < perMs; i++ {
			if _, err := breaker.Execute(ctx, b, succeedCtx); err != nil {
				t.Fatal(err)
			}
			calls++
		}
		if d := time.Until(began.Add(time.Duration(ms) * time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
	}
	elapsed := time.Since(began)
	cmds := e.cmds.n.Load()
	rate := float64(calls) / elapsed.Seconds()
	perCall := float64(cmds) / float64(calls)
	t.Logf("%d calls in %v (%.0f/s): %d Redis commands, %.4f per call", calls, elapsed.Round(time.Millisecond), rate, cmds, perCall)
	if perCall > 0.01 {
		t.Errorf("%.4f Redis commands per call at %.0f calls/s, want at most 0.01", perCall, rate)
	}
}
