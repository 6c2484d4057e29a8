package breaker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

func TestDeciderString(t *testing.T) {
	for _, tt := range []struct {
		d    breaker.Decider
		want string
	}{
		{breaker.DecideShared, "shared"},
		{breaker.DecideLocal, "local"},
		{breaker.DecideFailOpen, "fail-open"},
		{breaker.DecideFailClosed, "fail-closed"},
		{breaker.Decider(-1), "Decider(?)"},
		{breaker.Decider(4), "Decider(?)"},
	} {
		if got := tt.d.String(); got != tt.want {
			t.Errorf("Decider(%d).String() = %q, want %q", int(tt.d), got, tt.want)
		}
	}
}

// fastStore is a store of e's miniredis that tries Redis again soon after
// losing it, so that the breaker finds it back within the test.
func (e *mini) fastStore() *store.Store {
	e.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: e.m.Addr(), MaxRetries: -1})
	e.t.Cleanup(func() { c.Close() })
	st, err := store.New(c, store.Options{Prefix: e.prefix, Cooldown: 10 * time.Millisecond, Timeout: time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { st.Close() })
	return st
}

// checkDeciding checks what decides b's calls.
func checkDeciding(t *testing.T, step string, b *breaker.Breaker, decider breaker.Decider, state breaker.State) {
	t.Helper()
	if got := b.Decider(); got != decider {
		t.Errorf("%s: Decider() = %v, want %v", step, got, decider)
	}
	if got := b.State(); got != state {
		t.Errorf("%s: State() = %v, want %v", step, got, state)
	}
}

// TestStateFollowsTheFallback loses Redis under each fallback and checks
// that State and Decider say what decides the calls, that entering and
// leaving the fallback are transitions between those states, and that the
// local breaker's trip is an event marked as the local breaker's.
func TestStateFollowsTheFallback(t *testing.T) {
	for _, tt := range []struct {
		fallback breaker.Fallback
		decider  breaker.Decider
		down     breaker.State // State() once the store is lost
		tripped  breaker.State // State() after the failures that follow
	}{
		{breaker.FallbackLocal, breaker.DecideLocal, breaker.Closed, breaker.Open},
		{breaker.FallbackOpen, breaker.DecideFailOpen, breaker.Disabled, breaker.Disabled},
		{breaker.FallbackClosed, breaker.DecideFailClosed, breaker.Open, breaker.Open},
	} {
		t.Run(tt.fallback.String(), func(t *testing.T) {
			e := newMini(t)
			b, err := breaker.New("visible", e.fastStore(), reportingFor(breaker.Settings{
				ConsecutiveFailures: 2, OpenDuration: time.Hour, Fallback: tt.fallback, Instance: "pod-1", Clock: e.clock}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			track(t, b)
			evs := events(b)
			ctx := context.Background()

			if err := call(b, nil); err != nil {
				t.Fatal(err)
			}
			checkDeciding(t, "store up", b, breaker.DecideShared, breaker.Closed)

			e.m.Close()
			call(b, errBoom) // its report, or the read before it, finds Redis gone
			ev := next(t, evs, breaker.StoreUnavailable)
			if ev.From != breaker.Closed || ev.To != tt.down || ev.Decider != tt.decider {
				t.Errorf("store-unavailable: %v -> %v, decider %v; want closed -> %v, %v", ev.From, ev.To, ev.Decider, tt.down, tt.decider)
			}
			call(b, errBoom) // the second failure in a row: the local breaker trips
			checkDeciding(t, "store down", b, tt.decider, tt.tripped)
			if tt.fallback == breaker.FallbackLocal {
				ev := next(t, evs, breaker.StateChanged)
				want := breaker.Event{Kind: breaker.StateChanged, Name: "visible", From: breaker.Closed, To: breaker.Open,
					Reason: "consecutive_failures", NextProbeIn: time.Hour, Instance: "pod-1", Local: true,
					Fallback: breaker.FallbackLocal, Decider: breaker.DecideLocal}
				if ev != want {
					t.Errorf("local trip:\n got %+v\nwant %+v", ev, want)
				}
			}
			var oe *breaker.OpenError
			switch err := b.Check(ctx); {
			case tt.tripped == breaker.Disabled && err != nil:
				t.Errorf("Check while failing open: %v, want nil", err)
			case tt.tripped == breaker.Open && (!errors.As(err, &oe) || !oe.Local || oe.State != breaker.Open):
				t.Errorf("Check while the fallback rejects: %v, want a local *OpenError, state open", err)
			}
			none(t, evs)

			if err := e.m.Restart(); err != nil {
				t.Fatal(err)
			}
			ev = next(t, evs, breaker.StoreRecovered)
			if ev.From != tt.tripped || ev.To != breaker.Closed || ev.Decider != breaker.DecideShared {
				t.Errorf("store-recovered: %v -> %v, decider %v; want %v -> closed, shared", ev.From, ev.To, ev.Decider, tt.tripped)
			}
			// The failures held while Redis was away are delivered now and
			// may trip the shared breaker: State follows the shared view.
			snap := snapshot(t, b)
			checkDeciding(t, "store back", b, breaker.DecideShared, snap.State)
		})
	}
}

// TestLocalBreakerTransitionsAreEvents runs the local breaker through a
// whole cycle while Redis is away: its half-open (on its own timer), a
// failed probe and a successful one are events, heard in order, and a
// listener may ask the breaker what decides.
func TestLocalBreakerTransitionsAreEvents(t *testing.T) {
	e := newMini(t)
	// The local breaker times its open state on the system clock.
	const open = 20 * time.Millisecond
	b := e.instance("cycle", breaker.Settings{ConsecutiveFailures: 2, OpenDuration: open, Instance: "pod-1"})
	type heard struct {
		ev    breaker.Event
		check error
	}
	ch := make(chan heard, 64)
	b.Listen(func(ev breaker.Event) {
		if ev.Decider == breaker.DecideLocal {
			ch <- heard{ev, b.Check(context.Background())}
		}
	})
	await := func(kind breaker.EventKind, from, to breaker.State, reason string) heard {
		t.Helper()
		select {
		case h := <-ch:
			if h.ev.Kind != kind || h.ev.From != from || h.ev.To != to || h.ev.Reason != reason || h.ev.Generation != 0 {
				t.Fatalf("got %v %v -> %v (%s, generation %d), want %v %v -> %v (%s, generation 0)",
					h.ev.Kind, h.ev.From, h.ev.To, h.ev.Reason, h.ev.Generation, kind, from, to, reason)
			}
			return h
		case <-time.After(5 * time.Second):
			t.Fatalf("no %v -> %v event within 5s (state %v)", from, to, b.State())
		}
		return heard{}
	}

	call(b, nil)
	e.m.Close()
	call(b, errBoom) // its report, or the read before it, finds Redis gone
	if h := await(breaker.StoreUnavailable, breaker.Closed, breaker.Closed, ""); h.check != nil {
		t.Errorf("Check in the store-unavailable listener: %v, want nil", h.check)
	}
	call(b, errBoom) // the local breaker trips
	if h := await(breaker.StateChanged, breaker.Closed, breaker.Open, "consecutive_failures"); !errors.Is(h.check, breaker.ErrOpen) {
		t.Errorf("Check in the listener of the trip: %v, want ErrOpen", h.check)
	}
	await(breaker.StateChanged, breaker.Open, breaker.HalfOpen, "open_timeout")
	checkDeciding(t, "half-open", b, breaker.DecideLocal, breaker.HalfOpen)
	if err := call(b, errBoom); !errors.Is(err, errBoom) {
		t.Fatalf("probe: got %v, want it admitted", err)
	}
	await(breaker.StateChanged, breaker.HalfOpen, breaker.Open, "probe_failed")
	await(breaker.StateChanged, breaker.Open, breaker.HalfOpen, "open_timeout")
	if err := call(b, nil); err != nil {
		t.Fatalf("probe: got %v, want it admitted", err)
	}
	if h := await(breaker.StateChanged, breaker.HalfOpen, breaker.Closed, "probes_succeeded"); h.check != nil {
		t.Errorf("Check in the listener once closed: %v, want nil", h.check)
	}
	checkDeciding(t, "closed again", b, breaker.DecideLocal, breaker.Closed)
}

// TestFallbackVisibleWithRedisDown stops a real redis-server under a
// breaker on the local fallback: State reports the local breaker's trip,
// its event is marked local, and the breaker follows the shared state again
// once Redis is back.
func TestFallbackVisibleWithRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	o := store.Options{Prefix: fleetPrefix(t), Timeout: 200 * time.Millisecond, Cooldown: 100 * time.Millisecond}
	in := fleetStart(t, srv, "ledger", breaker.Settings{ConsecutiveFailures: 3, OpenDuration: time.Minute, Instance: "pod-1"}, o)
	b := in.b
	ctx := context.Background()
	if err := call(b, nil); err != nil {
		t.Fatal(err)
	}
	checkDeciding(t, "Redis up", b, breaker.DecideShared, breaker.Closed)

	srv.Stop()
	admitted := 0
	for i := 0; i < 6; i++ {
		if err := call(b, errBoom); errors.Is(err, errBoom) {
			admitted++
		}
	}
	if admitted != 3 {
		t.Errorf("%d failing calls admitted while Redis is down, want 3 (the local breaker's threshold)", admitted)
	}
	checkDeciding(t, "Redis down", b, breaker.DecideLocal, breaker.Open)
	down := fleetAwait(t, in, "store-unavailable", func(e breaker.Event) bool { return e.Kind == breaker.StoreUnavailable })
	if down.Decider != breaker.DecideLocal || down.From != breaker.Closed || down.To != breaker.Closed {
		t.Errorf("store-unavailable: %v -> %v, decider %v; want closed -> closed, local", down.From, down.To, down.Decider)
	}
	trip := fleetAwait(t, in, "local trip", fleetChangedTo(breaker.Open))
	if trip.Decider != breaker.DecideLocal || trip.Instance != "pod-1" || !trip.Local || trip.Generation != 0 || trip.Reason != "consecutive_failures" {
		t.Errorf("local trip: %+v, want decider local, by pod-1, generation 0, consecutive_failures", trip)
	}
	var oe *breaker.OpenError
	if err := b.Check(ctx); !errors.As(err, &oe) || !oe.Local || oe.State != breaker.Open {
		t.Errorf("Check while the local breaker is open: %v, want a local *OpenError, state open", err)
	}

	srv.Restart()
	up := fleetRecover(t, in)
	if up.Decider != breaker.DecideShared || up.From != breaker.Open || up.Unreported != 3 {
		t.Errorf("store-recovered: from %v, decider %v, unreported %d; want from open, shared, 3", up.From, up.Decider, up.Unreported)
	}
	// Redis came back empty; the 3 failures held meanwhile trip the breaker
	// the store starts anew, for the whole fleet.
	snap := fleetSnapshot(t, b)
	checkDeciding(t, "Redis back", b, breaker.DecideShared, snap.State)
	if snap.State != breaker.Open || snap.Counts.TotalFailures != 3 {
		t.Errorf("after the restart: %v with %d failures, want open with 3", snap.State, snap.Counts.TotalFailures)
	}
}
