package breaker_test

import (
	"context"
	"testing"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/redistest"
)

// TestMaxFlushIntervalReports: at the bound, the settling time a report
// carries is one Redis takes: a failure is counted and the store, not the
// fallback, still decides.
func TestMaxFlushIntervalReports(t *testing.T) {
	srv := redistest.Start(t)
	b := mustNew(t, "slow-flush", realStore(t, srv), breaker.Settings{FlushInterval: breaker.MaxFlushInterval})
	unavailable := make(chan breaker.Event, 16)
	b.Listen(func(e breaker.Event) {
		if e.Kind == breaker.StoreUnavailable {
			unavailable <- e
		}
	})
	if err := call(b, errBoom); err != errBoom {
		t.Fatalf("call: %v", err)
	}
	// The failure is reported before Done returns.
	select {
	case e := <-unavailable:
		t.Fatalf("the store refused the report: %v", e.Err)
	default:
	}
	if d := b.Decider(); d != breaker.DecideShared {
		t.Fatalf("decider %v, want shared", d)
	}
	snap, err := b.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if snap.Counts.TotalFailures != 1 {
		t.Errorf("TotalFailures = %d, want 1", snap.Counts.TotalFailures)
	}
}
