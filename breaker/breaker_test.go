package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	circuitbreaker "github.com/mercari/go-circuitbreaker"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/store"
)

func TestLifecycleAcrossInstances(t *testing.T) {
	e := newMini(t)
	s := breaker.Settings{ConsecutiveFailures: 3, OpenDuration: 10 * time.Second, MaxOpenDuration: 40 * time.Second}
	a, b := e.instance("dep", s), e.instance("dep", s)
	aEvents, bEvents := events(a), events(b)

	// Failures from two instances count towards one run.
	call(a, errBoom)
	call(b, errBoom)
	call(a, errBoom)
	opened := next(t, aEvents, breaker.StateChanged)
	if opened.From != breaker.Closed || opened.To != breaker.Open || opened.Reason != "consecutive_failures" || !opened.Local {
		t.Fatalf("a heard %+v, want its own closed->open on consecutive_failures", opened)
	}
	if opened.Counts.PreviousFailures != 3 || opened.NextProbeIn != 10*time.Second {
		t.Fatalf("open event: got %d failures, next probe in %v; want 3 and 10s", opened.Counts.PreviousFailures, opened.NextProbeIn)
	}
	heard := next(t, bEvents, breaker.StateChanged)
	if heard.To != breaker.Open || heard.Local || heard.Instance != a.Instance() || heard.Generation != opened.Generation {
		t.Fatalf("b heard %+v, want a's transition to open, generation %d", heard, opened.Generation)
	}

	// Open: both reject without asking Redis, saying when the probe is due.
	e.advance(4 * time.Second)
	err := call(b, nil)
	var oe *breaker.OpenError
	if !errors.Is(err, breaker.ErrOpen) || !errors.As(err, &oe) || oe.NextProbeIn != 6*time.Second {
		t.Fatalf("b while open: got %v, want ErrOpen with next probe in 6s", err)
	}
	if err := b.Check(context.Background()); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("Check while open: got %v, want ErrOpen", err)
	}

	// Half-open: one probe for the fleet; its failure reopens, for longer.
	e.advance(6 * time.Second)
	probe, err := a.Allow(context.Background())
	if err != nil || !probe.Probe() {
		t.Fatalf("first call after the open time: got %v (probe %v), want a probe", err, probe.Probe())
	}
	if _, err := b.Allow(context.Background()); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("second caller while the probe runs: got %v, want ErrOpen", err)
	}
	probe.Done(context.Background(), errBoom)
	snap := snapshot(t, b)
	if snap.State != breaker.Open || snap.NextProbeIn != 20*time.Second || snap.Counts.Trips != 2 || snap.Reason != "probe_failed" {
		t.Fatalf("after a failed probe: got %+v, want open for 20s (2nd trip), reason probe_failed", snap)
	}

	// The next probe succeeds and closes the breaker for everyone.
	e.advance(20 * time.Second)
	if err := call(b, nil); err != nil {
		t.Fatalf("probe: got %v, want nil", err)
	}
	for _, ch := range []<-chan breaker.Event{aEvents, bEvents} {
		ev := next(t, ch, breaker.StateChanged)
		for ev.To != breaker.Closed {
			ev = next(t, ch, breaker.StateChanged)
		}
		if ev.From != breaker.HalfOpen || ev.Reason != "probes_succeeded" {
			t.Fatalf("close event: got %+v, want half-open->closed, probes_succeeded", ev)
		}
	}
	if snap := snapshot(t, a); snap.State != breaker.Closed || snap.Counts.Trips != 0 {
		t.Fatalf("after the probe: got %v with %d trips, want closed with 0", snap.State, snap.Counts.Trips)
	}
}

func TestFailureRateOverWindow(t *testing.T) {
	e := newMini(t)
	s := breaker.Settings{ConsecutiveFailures: breaker.Off, FailureRate: 0.5, MinimumCalls: 10, Window: 10 * time.Second}
	a, b := e.instance("rate", s), e.instance("rate", s)
	// 4 failures and 5 successes: below the minimum number of calls.
	for i := 0; i < 9; i++ {
		var err error
		if i%2 == 0 {
			err = errBoom
		}
		call([]*breaker.Breaker{a, b}[i%2], err)
	}
	if got := snapshot(t, a); got.State != breaker.Closed || got.Counts.WindowCalls != 9 || got.Counts.WindowFailures != 5 {
		t.Fatalf("after 9 calls: got %v with %d/%d failures, want closed with 5/9", got.State, got.Counts.WindowFailures, got.Counts.WindowCalls)
	}
	// The window slides: old calls leave it.
	e.advance(11 * time.Second)
	if got := snapshot(t, a); got.Counts.WindowCalls != 0 {
		t.Fatalf("after the window passed: got %d calls in it, want 0", got.Counts.WindowCalls)
	}
	for i := 0; i < 5; i++ {
		call(a, nil)
	}
	for i := 0; i < 4; i++ {
		call(b, errBoom)
	}
	if got := snapshot(t, a).State; got != breaker.Closed {
		t.Fatalf("4 of 9: got %v, want closed", got)
	}
	call(b, errBoom) // 5 of 10: the rate is reached with the minimum number of calls
	got := snapshot(t, a)
	if got.State != breaker.Open || got.Reason != "failure_rate" {
		t.Fatalf("5 of 10: got %v (%s), want open on failure_rate", got.State, got.Reason)
	}
}

func TestSlowCallRate(t *testing.T) {
	e := newMini(t)
	s := breaker.Settings{ConsecutiveFailures: breaker.Off, SlowCallRate: 0.5, SlowCallDuration: time.Second, MinimumCalls: 4}
	b := e.instance("slow", s)
	slowCall := func() {
		p, err := b.Allow(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(1500 * time.Millisecond) // the local clock times the call
		p.Done(context.Background(), nil)
	}
	call(b, nil)
	call(b, nil)
	slowCall()
	if got := snapshot(t, b); got.State != breaker.Closed || got.Counts.WindowSlowCalls != 1 {
		t.Fatalf("1 slow of 3: got %v with %d slow, want closed with 1", got.State, got.Counts.WindowSlowCalls)
	}
	slowCall()
	if got := snapshot(t, b); got.State != breaker.Open || got.Reason != "slow_call_rate" {
		t.Fatalf("2 slow of 4: got %v (%s), want open on slow_call_rate", got.State, got.Reason)
	}
}

func TestQuorumKeepsOneSickInstanceFromTripping(t *testing.T) {
	e := newMini(t)
	s := breaker.Settings{ConsecutiveFailures: 3, Quorum: 2}
	sick, other := e.instance("q", s), e.instance("q", s)
	for i := 0; i < 10; i++ {
		call(sick, errBoom)
	}
	got := snapshot(t, other)
	if got.State != breaker.Closed || got.Counts.ConsecutiveFailures != 10 || got.Counts.TroubledInstances != 1 {
		t.Fatalf("one instance failing 10 times: got %v, %d consecutive, %d troubled; want closed, 10, 1",
			got.State, got.Counts.ConsecutiveFailures, got.Counts.TroubledInstances)
	}
	call(other, errBoom)
	if got := snapshot(t, other); got.State != breaker.Open {
		t.Fatalf("a second instance failing too: got %v, want open", got.State)
	}
}

func TestClassification(t *testing.T) {
	e := newMini(t)
	b := e.instance("classify", breaker.Settings{ConsecutiveFailures: 100,
		Classify: func(ctx context.Context, err error) breaker.Outcome {
			if err.Error() == "not found" {
				return breaker.Success
			}
			return breaker.DefaultClassify(ctx, err)
		}})
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	steps := []struct {
		name       string
		ctx        context.Context
		err        error
		wantOK     uint64
		wantFailed uint64
	}{
		{"success", context.Background(), nil, 1, 0},
		{"failure", context.Background(), errBoom, 1, 1},
		{"cancelled by the caller is ignored", cancelled, context.Canceled, 1, 1},
		{"Canceled from the dependency is a failure", context.Background(), context.Canceled, 1, 2},
		{"wrapped Ignore", context.Background(), fmt.Errorf("outer: %w", circuitbreaker.Ignore(errBoom)), 1, 2},
		{"wrapped MarkAsSuccess", context.Background(), fmt.Errorf("outer: %w", circuitbreaker.MarkAsSuccess(errBoom)), 2, 2},
		{"hook", context.Background(), errors.New("not found"), 3, 2},
	}
	for _, st := range steps {
		p, err := b.Allow(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		p.Done(st.ctx, st.err)
		c := snapshot(t, b).Counts
		if c.Successes != st.wantOK || c.Failures != st.wantFailed {
			t.Fatalf("%s: got %d successes, %d failures; want %d, %d", st.name, c.Successes, c.Failures, st.wantOK, st.wantFailed)
		}
	}
}

func TestPanicCountsAsFailureAndIsReraised(t *testing.T) {
	e := newMini(t)
	b := e.instance("panics", breaker.Settings{})
	func() {
		defer func() {
			if r := recover(); r != "kaboom" {
				t.Fatalf("recovered %v, want the original panic value", r)
			}
		}()
		breaker.Execute(context.Background(), b, func(context.Context) (int, error) { panic("kaboom") })
	}()
	if c := snapshot(t, b).Counts; c.Failures != 1 {
		t.Fatalf("got %d failures, want the panic counted as 1", c.Failures)
	}
}

func TestStaleOutcomesAreNotAppliedToANewGeneration(t *testing.T) {
	e := newMini(t)
	s := breaker.Settings{ConsecutiveFailures: 2}
	a, b := e.instance("stale", s), e.instance("stale", s)
	slow, err := a.Allow(context.Background()) // admitted while closed
	if err != nil {
		t.Fatal(err)
	}
	call(b, errBoom)
	call(b, errBoom) // trips
	if err := b.ForceClose(context.Background()); err != nil {
		t.Fatal(err)
	}
	slow.Done(context.Background(), errBoom) // belongs to the first closed period
	got := snapshot(t, b)
	if got.State != breaker.Closed || got.Counts.Failures != 0 || got.Counts.TotalStale != 1 || got.Counts.TotalFailures != 3 {
		t.Fatalf("got %v with %d failures, %d stale, %d total; want closed, 0, 1, 3",
			got.State, got.Counts.Failures, got.Counts.TotalStale, got.Counts.TotalFailures)
	}
}

func TestForceCommandsActOnTheFleet(t *testing.T) {
	e := newMini(t)
	a, b := e.instance("force", breaker.Settings{}), e.instance("force", breaker.Settings{})
	bEvents := events(b)
	ctx := context.Background()

	if err := a.ForceOpen(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, bEvents, breaker.StateChanged); ev.To != breaker.ForcedOpen {
		t.Fatalf("b heard %v, want forced-open", ev.To)
	}
	e.advance(time.Hour)
	var oe *breaker.OpenError
	if err := call(b, nil); !errors.As(err, &oe) || oe.State != breaker.ForcedOpen {
		t.Fatalf("b while forced open, an hour later: got %v, want a forced-open rejection", err)
	}
	if err := a.Disable(ctx); err != nil {
		t.Fatal(err)
	}
	next(t, bEvents, breaker.StateChanged)
	for i := 0; i < 20; i++ {
		if err := call(b, errBoom); !errors.Is(err, errBoom) {
			t.Fatalf("disabled, call %d: got %v, want the call to run", i, err)
		}
	}
	if got := snapshot(t, a).State; got != breaker.Disabled {
		t.Fatalf("after 20 failures while disabled: got %v, want disabled", got)
	}
	if err := a.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	got := snapshot(t, b)
	if got.State != breaker.Closed || got.Counts.TotalFailures != 0 || got.Reason != "reset" {
		t.Fatalf("after reset: got %+v, want closed with no totals", got)
	}
}

func TestForeignDataIsAnErrorNotAPanic(t *testing.T) {
	e := newMini(t)
	st := e.store()
	b, err := breaker.New("foreign", st, reportingFor(breaker.Settings{Clock: e.clock}))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	evs := events(b)
	state := st.Keys("foreign")[0]

	for _, corrupt := range []func(){
		func() { e.m.Del(state); e.m.Set(state, "not a hash") },
		func() { e.m.Del(state); e.m.HSet(state, "st", "banana") },
		func() {
			b.Reset(context.Background())
			e.m.HSet(state, "gen", "twelve")
		},
	} {
		corrupt()
		if _, err := b.Snapshot(context.Background()); !errors.Is(err, store.ErrCorrupt) {
			t.Fatalf("Snapshot: got %v, want ErrCorrupt", err)
		}
		// Calls go on, decided by the local fallback.
		if err := call(b, nil); err != nil {
			t.Fatalf("call on corrupt data: got %v, want the local fallback to admit it", err)
		}
		if ev := next(t, evs, breaker.StoreUnavailable); !errors.Is(ev.Err, store.ErrCorrupt) {
			t.Fatalf("event error: got %v, want ErrCorrupt", ev.Err)
		}
		if err := b.Reset(context.Background()); err != nil {
			t.Fatalf("Reset on corrupt data: %v", err)
		}
		next(t, evs, breaker.StoreRecovered)
		if got := snapshot(t, b).State; got != breaker.Closed {
			t.Fatalf("after Reset: got %v, want closed", got)
		}
	}
}

func TestFallbackWhileRedisIsDown(t *testing.T) {
	for _, tt := range []struct {
		fallback breaker.Fallback
		admitted int // of 10 failing calls
	}{
		// The first call is admitted from the closed view without I/O; its
		// report finds Redis gone. The local breaker trips on 3 failures.
		{breaker.FallbackLocal, 3},
		{breaker.FallbackOpen, 10},
		{breaker.FallbackClosed, 1},
	} {
		t.Run(tt.fallback.String(), func(t *testing.T) {
			e := newMini(t)
			b := e.instance("down", breaker.Settings{ConsecutiveFailures: 3, Fallback: tt.fallback})
			evs := events(b)
			call(b, nil) // learn the shared state
			e.m.Close()
			admitted := 0
			for i := 0; i < 10; i++ {
				err := call(b, errBoom)
				if errors.Is(err, errBoom) {
					admitted++
				} else if !errors.Is(err, breaker.ErrOpen) {
					t.Fatalf("call %d: got %v, want the call's error or ErrOpen", i, err)
				}
			}
			// The re-read that follows the subscription may run after Redis
			// died and put the breaker on the fallback before the first call:
			// then failing closed admits nothing at all.
			if tt.fallback == breaker.FallbackClosed && admitted == 0 {
				tt.admitted = 0
			}
			if admitted != tt.admitted {
				t.Fatalf("got %d calls admitted, want %d", admitted, tt.admitted)
			}
			ev := next(t, evs, breaker.StoreUnavailable)
			if !errors.Is(ev.Err, store.ErrUnavailable) || ev.Fallback != tt.fallback {
				t.Fatalf("event: got %+v, want ErrUnavailable and fallback %v", ev, tt.fallback)
			}
			if tt.fallback == breaker.FallbackLocal {
				// The local breaker's trip, marked as its own.
				if ev := next(t, evs, breaker.StateChanged); ev.Decider != breaker.DecideLocal || ev.To != breaker.Open {
					t.Fatalf("event: got %+v, want the local breaker's trip", ev)
				}
			}
			none(t, evs) // once, not once per call
		})
	}
}

func TestLostStateIsAnnouncedAsAChange(t *testing.T) {
	e := newMini(t)
	b := e.instance("lost", breaker.Settings{ConsecutiveFailures: 1})
	evs := events(b)
	call(b, errBoom)
	if ev := next(t, evs, breaker.StateChanged); ev.To != breaker.Open {
		t.Fatalf("got %v, want open", ev.To)
	}
	e.m.FlushAll() // Redis restarted empty
	e.advance(time.Second)
	snapshot(t, b)
	ev := next(t, evs, breaker.StateChanged)
	if ev.From != breaker.Open || ev.To != breaker.Closed || ev.Reason != "created" {
		t.Fatalf("got %+v, want open -> closed, reason created", ev)
	}
}
