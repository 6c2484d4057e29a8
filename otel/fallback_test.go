package breakwaterotel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/breakwater-go/breakwater/breaker"
	breakwaterotel "github.com/breakwater-go/breakwater/otel"
	"github.com/breakwater-go/breakwater/store"
)

// TestFallbackMetrics loses Redis under a breaker on the local fallback:
// the state gauge reports the local breaker's state while it decides, the
// fallback gauge is 1, the local trip is a transition with decider=local;
// once Redis is back, the gauges follow the shared state again.
func TestFallbackMetrics(t *testing.T) {
	e := newEnv(t)
	// A store that tries Redis again soon after losing it.
	st, err := store.New(e.c, store.Options{Prefix: "otel-fallback", Cooldown: 10 * time.Millisecond, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	m, err := breakwaterotel.New(breakwaterotel.Options{MeterProvider: mp})
	if err != nil {
		t.Fatal(err)
	}
	b, err := breaker.New("ledger", st, breaker.Settings{ConsecutiveFailures: 2, OpenDuration: time.Hour,
		Observer: m, Clock: e.clock, Instance: "pod-1", Reporting: breaker.ReportSync})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	// The metrics listen from New on: they hear every event before this
	// test's listener does.
	events := make(chan breaker.Event, 64)
	b.Listen(func(ev breaker.Event) { events <- ev })
	await := func(want func(breaker.Event) bool, what string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case ev := <-events:
				if want(ev) {
					return
				}
			case <-deadline:
				t.Fatalf("no %s within 5s", what)
			}
		}
	}
	led := "breakwater.circuitbreaker.name=ledger"
	state := func(r reading, s breaker.State) int64 {
		return r.int("breakwater.circuitbreaker.state", led+",breakwater.circuitbreaker.state="+s.String())
	}
	localTrips := led + ",breakwater.circuitbreaker.decider=local,breakwater.circuitbreaker.from_state=closed,breakwater.circuitbreaker.to_state=open"

	if err := call(b, nil); err != nil {
		t.Fatal(err)
	}
	e.m.Close()
	_ = call(b, errBoom) // its report, or the read before it, finds Redis gone
	await(func(ev breaker.Event) bool { return ev.Kind == breaker.StoreUnavailable }, "store-unavailable event")
	_ = call(b, errBoom) // the local breaker trips
	await(func(ev breaker.Event) bool {
		return ev.Kind == breaker.StateChanged && ev.Decider == breaker.DecideLocal && ev.To == breaker.Open
	}, "local trip")
	if err := call(b, nil); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("local breaker open: got %v, want ErrOpen", err)
	}
	r := collect(t, reader)
	check(t, "local breaker open",
		"state open", state(r, breaker.Open), int64(1),
		"state closed", state(r, breaker.Closed), int64(0),
		"fallback active", r.int("breakwater.circuitbreaker.fallback.active", led+",breakwater.circuitbreaker.fallback=local"), int64(1),
		"local trips", r.int("breakwater.circuitbreaker.transitions", localTrips), int64(1),
		"shared transitions", r.int("breakwater.circuitbreaker.transitions", led+",breakwater.circuitbreaker.decider=shared"), int64(0),
		"rejections (local)", r.int("breakwater.circuitbreaker.rejections", led+",breakwater.circuitbreaker.reason=local_fallback"), int64(1))

	if err := e.m.Restart(); err != nil {
		t.Fatal(err)
	}
	await(func(ev breaker.Event) bool { return ev.Kind == breaker.StoreRecovered }, "store-recovered event")
	// The two failures held meanwhile are delivered and trip the shared
	// breaker: the gauge follows the shared state.
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	snap, err := b.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r = collect(t, reader)
	check(t, "Redis back",
		"decider", b.Decider(), breaker.DecideShared,
		"state "+snap.State.String(), state(r, snap.State), int64(1),
		"states reported", r.int("breakwater.circuitbreaker.state", led), int64(1),
		"fallback active", r.int("breakwater.circuitbreaker.fallback.active", led), int64(0),
		"local trips", r.int("breakwater.circuitbreaker.transitions", localTrips), int64(1))
}
