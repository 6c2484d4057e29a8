package breaker_test

import (
	"context"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

// flushSeen passes on the size of every batch delivered.
type flushSeen struct {
	breaker.NopObserver
	ch chan int
}

func (f *flushSeen) BatchFlushed(i breaker.FlushInfo) {
	if i.Err == nil {
		f.ch <- i.Outcomes
	}
}

// TestSettleCallBringsHeldOutcomes: when the failures of two instances make
// a run long enough to trip once it has settled, a third instance that
// holds a success reports it at once, not when its hour-long flush
// interval ends.
func TestSettleCallBringsHeldOutcomes(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	o := store.Options{Prefix: fleetPrefix(t), Timeout: 10 * time.Second}
	s := breaker.Settings{ConsecutiveFailures: 2, FlushInterval: time.Hour, OpenDuration: time.Hour}
	seen := &flushSeen{ch: make(chan int, 16)}
	sa := s
	sa.Instance, sa.Observer = "a", seen
	a := fleetStart(t, srv, "settle", sa, o)
	fleet := fleetOf(t, srv, 2, "settle", "failing", s, o)

	// a's first call reads the state (the store learns the breaker's key).
	p, err := a.b.Allow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.Done(ctx, nil)
	for _, in := range fleet {
		p, err := in.b.Allow(ctx)
		if err != nil {
			t.Fatalf("%s: %v", in.b.Instance(), err)
		}
		p.Done(ctx, errFleetDown) // at once: a failure may trip the breaker
	}
	select {
	case n := <-seen.ch:
		if n != 1 {
			t.Fatalf("a delivered %d outcomes, want its 1 success", n)
		}
	case <-time.After(fleetWait):
		t.Fatalf("a did not deliver its success within %v of the call", fleetWait)
	}
	snap, err := fleet[0].b.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Counts.TotalSuccesses != 1 || snap.Counts.TotalFailures != 2 {
		t.Errorf("totals: %d successes, %d failures; want 1 and 2", snap.Counts.TotalSuccesses, snap.Counts.TotalFailures)
	}
}
