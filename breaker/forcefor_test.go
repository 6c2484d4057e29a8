package breaker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
)

func TestForceOpenForHalfOpensByItself(t *testing.T) {
	e := newMini(t)
	a, b := e.instance("for", breaker.Settings{}), e.instance("for", breaker.Settings{})
	bEvents := events(b)
	ctx := context.Background()

	if err := a.ForceOpenFor(ctx, 0); err == nil {
		t.Fatal("ForceOpenFor(0): got nil, want an error")
	}
	if err := a.ForceOpenFor(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ev := next(t, bEvents, breaker.StateChanged)
	if ev.To != breaker.Open || ev.Reason != "forced_open" || ev.NextProbeIn != 10*time.Second {
		t.Fatalf("b heard %v (%s, next probe in %v), want open (forced_open, 10s)", ev.To, ev.Reason, ev.NextProbeIn)
	}
	snap := snapshot(t, a)
	if snap.State != breaker.Open || snap.Counts.Trips != 0 || snap.NextProbeIn != 10*time.Second {
		t.Fatalf("snapshot: got %v, trips %d, next probe in %v; want open, 0 trips, 10s", snap.State, snap.Counts.Trips, snap.NextProbeIn)
	}
	var oe *breaker.OpenError
	if err := call(b, nil); !errors.As(err, &oe) || oe.NextProbeIn != 10*time.Second {
		t.Fatalf("b while open for 10s: got %v, want a rejection with the next probe in 10s", err)
	}

	// Again while open: a new generation with a new deadline (open to
	// open is announced, but is no change of state for listeners).
	e.advance(5 * time.Second)
	if err := a.ForceOpenFor(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if s2 := snapshot(t, a); s2.Generation <= ev.Generation || s2.NextProbeIn != 20*time.Second {
		t.Fatalf("second ForceOpenFor: generation %d (next probe in %v), want > %d (20s)", s2.Generation, s2.NextProbeIn, ev.Generation)
	}
	e.advance(20 * time.Second)
	if err := call(b, nil); err != nil {
		t.Fatalf("b after the open time: got %v, want a probe that succeeds", err)
	}
	if got := snapshot(t, a); got.State != breaker.Closed || got.Reason != "probes_succeeded" {
		t.Fatalf("after the probe: got %v (%s), want closed (probes_succeeded)", got.State, got.Reason)
	}
}
