package clustertest

// Fleet tests of the breaker: several breaker.Breaker instances, each with
// its own go-redis client, sharing the Redis of fleet.StartRedis (one
// container per test), checking what DESIGN.md promises a fleet:
//
//   - Redis stopped, paused or cut off the network costs each call at most
//     one store timeout; each instance then falls back as configured and
//     says so in exactly one event;
//   - after Redis comes back (Start with empty data, Unpause, Connect) the
//     instances resubscribe, re-read the shared state, say so in one event
//     that counts the outcomes they could not report, and hear each
//     other's transitions again;
//   - failures counted across instances open the breaker once for all of
//     them, and half-open admits one probe for the whole fleet.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/cluster_test/internal/fleet"
	"github.com/breakwater-go/breakwater/store"
)

const (
	// storeTimeout bounds each Redis call of the stores under test.
	storeTimeout = 200 * time.Millisecond
	// storeCooldown is how long a store fails fast after Redis failed.
	storeCooldown = 250 * time.Millisecond
	// slack is what a call may take beyond storeTimeout (scheduling, -race).
	slack = 300 * time.Millisecond
	// recoveryWithin bounds how long the fleet may take to notice that Redis
	// is back: the subscription's reconnect backoff (at most 2s) plus a
	// re-read.
	recoveryWithin = 10 * time.Second
	// hearWithin bounds how long an announced transition takes to reach
	// every instance.
	hearWithin = 5 * time.Second
)

// callResult is what one instance saw while calling a dependency that is
// down during an outage of Redis.
type callResult struct {
	admitted int             // calls Allow admitted (each reached the dependency)
	rejected []error         // errors of the calls Allow rejected
	slowest  time.Duration   // the longest Allow or Done
	slowOp   string          // which one it was
	order    []bool          // admitted (true) or rejected, per attempt
	perCall  []time.Duration // Allow plus Done, per attempt
}

// callDown makes attempts calls through m's breaker to a dependency that
// fails, timing every Allow and Done.
func callDown(m *member, dep *dependency, attempts int) callResult {
	var res callResult
	ctx := context.Background()
	for i := 0; i < attempts; i++ {
		var p breaker.Permit
		var err error
		d := timed(func() { p, err = m.b.Allow(ctx) })
		total := d
		if d > res.slowest {
			res.slowest, res.slowOp = d, fmt.Sprintf("Allow #%d", i+1)
		}
		if err != nil {
			res.rejected = append(res.rejected, err)
			res.order = append(res.order, false)
			res.perCall = append(res.perCall, total)
			continue
		}
		res.admitted++
		res.order = append(res.order, true)
		_, callErr := dep.fail(ctx)
		d = timed(func() { p.Done(ctx, callErr) })
		total += d
		if d > res.slowest {
			res.slowest, res.slowOp = d, fmt.Sprintf("Done #%d", i+1)
		}
		res.perCall = append(res.perCall, total)
	}
	return res
}

// callFleetDown runs callDown on every member at once.
func callFleetDown(ms []*member, dep *dependency, attempts int) []callResult {
	out := make([]callResult, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		i, m := i, m
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = callDown(m, dep, attempts)
		}()
	}
	wg.Wait()
	return out
}

// checkFallback checks what each instance did while Redis was away: it
// admitted wantAdmitted calls, then rejected the rest locally; no call took
// longer than the store's timeout (plus slack); it announced the outage in
// exactly one StoreUnavailable event.
func checkFallback(t *testing.T, ms []*member, res []callResult, fb breaker.Fallback, wantAdmitted int) {
	t.Helper()
	var slowest time.Duration
	for _, r := range res {
		slowest = max(slowest, r.slowest)
	}
	t.Logf("while Redis was away, the slowest Allow or Done took %v (store timeout %v)", slowest.Round(time.Millisecond), storeTimeout)
	for i, m := range ms {
		r := res[i]
		if r.admitted != wantAdmitted {
			t.Errorf("instance %s: admitted %d calls while Redis was away, want %d (order %v)", m.id, r.admitted, wantAdmitted, r.order)
		}
		for k, ok := range r.order {
			if want := k < wantAdmitted; ok != want {
				t.Errorf("instance %s: attempt %d admitted = %v, want %v (order %v)", m.id, k+1, ok, want, r.order)
				break
			}
		}
		for _, err := range r.rejected {
			var oe *breaker.OpenError
			if !errors.As(err, &oe) || !oe.Local || !errors.Is(err, breaker.ErrOpen) {
				t.Errorf("instance %s: rejection %v, want a local *OpenError matching ErrOpen", m.id, err)
				break
			}
		}
		if bound := storeTimeout + slack; r.slowest > bound {
			t.Errorf("instance %s: %s took %v, want at most %v (store timeout %v); per call %v",
				m.id, r.slowOp, r.slowest, bound, storeTimeout, r.perCall)
		}
		down := m.events.of(breaker.StoreUnavailable)
		if len(down) != 1 {
			t.Errorf("instance %s: %d StoreUnavailable events, want 1; events:%s", m.id, len(down), m.events.describe())
			continue
		}
		if e := down[0]; !errors.Is(e.Err, store.ErrUnavailable) || e.Fallback != fb {
			t.Errorf("instance %s: StoreUnavailable Err = %v, Fallback = %v; want an error matching store.ErrUnavailable, Fallback %v",
				m.id, e.Err, e.Fallback, fb)
		}
	}
}

// checkTripHeard makes the first member trip the breaker with threshold
// failures and checks that every member hears exactly that transition, by
// pub/sub for all but the first, and then rejects calls from the shared
// state.
func checkTripHeard(t *testing.T, ms []*member, dep *dependency, threshold int, genBefore int64) {
	t.Helper()
	first := ms[0]
	for i := 0; i < threshold; i++ {
		if _, err := breaker.Execute(context.Background(), first.b, dep.fail); !errors.Is(err, errDependency) {
			t.Fatalf("instance %s: failing call %d: got error %v, want %v", first.id, i+1, err, errDependency)
		}
	}
	want := genBefore + 1
	everyMember(t, ms, hearWithin, fmt.Sprintf("a closed->open event of generation %d", want), func(m *member) bool {
		return len(m.events.transitions(breaker.Closed, breaker.Open)) > 0
	})
	for _, m := range ms {
		evs := m.events.of(breaker.StateChanged)
		if len(evs) != 1 {
			t.Errorf("instance %s: %d StateChanged events, want 1 (the trip); events:%s", m.id, len(evs), m.events.describe())
			continue
		}
		e := evs[0]
		if e.Generation != want || e.Instance != first.id || e.Reason != "consecutive_failures" || e.Local != (m == first) {
			t.Errorf("instance %s: trip event gen=%d by=%q reason=%q local=%v; want gen=%d by=%q reason=%q local=%v",
				m.id, e.Generation, e.Instance, e.Reason, e.Local, want, first.id, "consecutive_failures", m == first)
		}
		var oe *breaker.OpenError
		if err := m.b.Check(context.Background()); !errors.As(err, &oe) || oe.Local || oe.Generation != want || oe.State != breaker.Open {
			t.Errorf("instance %s: Check() = %v, want a shared (not local) *OpenError of generation %d", m.id, err, want)
		}
	}
}

// outage is a way of losing Redis and getting it back.
type outage struct {
	name     string
	cut      func(r *fleet.Redis)
	restore  func(r *fleet.Redis)
	dataKept bool // Redis comes back with the data it had
}

var outages = []outage{
	{name: "stop", cut: func(r *fleet.Redis) { r.Stop(0) }, restore: func(r *fleet.Redis) { r.Start() }},
	{name: "partition", cut: func(r *fleet.Redis) { r.Disconnect() }, restore: func(r *fleet.Redis) { r.Connect() }, dataKept: true},
}

// TestFleetOutage stops Redis (it comes back empty) or cuts it off the
// network (it comes back with its data) under a fleet of 10 instances, for
// each fallback that decides, and checks that:
//
//   - each instance admits calls as its fallback says: FallbackLocal until
//     its own local breaker has seen ConsecutiveFailures failures,
//     FallbackClosed only the call that discovered the outage (a closed
//     breaker admits from its cached view, without I/O); later calls are
//     rejected locally;
//   - no Allow or Done takes longer than the store's timeout plus slack;
//   - each instance emits exactly one StoreUnavailable event;
//   - when Redis is back, every instance emits exactly one StoreRecovered
//     event with no call made (the resubscribed subscription re-reads the
//     state), counting in Unreported every outcome it could not report;
//   - every instance adopted the state Redis now holds: a newer generation
//     after a restart, the same after a partition; an outcome reported by
//     each is counted, none is stale;
//   - a trip caused by one instance is heard by all (pub/sub works again).
func TestFleetOutage(t *testing.T) {
	const (
		size      = 10
		threshold = 3
	)
	for _, o := range outages {
		for _, fb := range []breaker.Fallback{breaker.FallbackLocal, breaker.FallbackClosed} {
			o, fb := o, fb
			t.Run(o.name+"/"+fb.String(), func(t *testing.T) {
				start := time.Now()
				defer func() { t.Logf("%s/%s: %v", o.name, fb, time.Since(start).Round(time.Millisecond)) }()
				r := fleet.StartRedis(t)
				ms := startFleet(t, r, fleetConfig{
					size: size,
					name: "payments",
					settings: breaker.Settings{
						ConsecutiveFailures: threshold,
						// Long enough that no local or shared breaker
						// half-opens during the test.
						OpenDuration: time.Minute,
						Fallback:     fb,
					},
					store: store.Options{Prefix: "outage-" + o.name + "-" + fb.String(), Timeout: storeTimeout, Cooldown: storeCooldown},
				})
				dep := &dependency{}
				succeedOnce(t, ms, dep)
				before := snapshot(t, ms[0])
				if before.Counts.TotalSuccesses != size {
					t.Fatalf("before the outage: TotalSuccesses = %d, want %d", before.Counts.TotalSuccesses, size)
				}

				o.cut(r)
				dep.calls.Store(0)
				res := callFleetDown(ms, dep, threshold+3)
				wantAdmitted := threshold
				if fb == breaker.FallbackClosed {
					wantAdmitted = 1
				}
				checkFallback(t, ms, res, fb, wantAdmitted)
				if got, want := dep.calls.Load(), int64(size*wantAdmitted); got != want {
					t.Errorf("dependency calls while Redis was away = %d, want %d", got, want)
				}

				// A store whose subscription comes back re-reads the state
				// unless it is still failing fast after a failed call (then
				// the instance's next call re-reads it). Let the cooldown of
				// the calls above run out, so that the re-read goes through.
				<-time.After(storeCooldown)
				o.restore(r)
				// No calls: the subscription notices Redis is back.
				everyMember(t, ms, recoveryWithin, "a StoreRecovered event without any call", func(m *member) bool {
					return len(m.events.of(breaker.StoreRecovered)) > 0
				})
				for _, m := range ms {
					up := m.events.of(breaker.StoreRecovered)
					if len(up) != 1 || len(m.events.of(breaker.StoreUnavailable)) != 1 {
						t.Errorf("instance %s: want exactly one StoreUnavailable then one StoreRecovered; events:%s", m.id, m.events.describe())
						continue
					}
					if up[0].Unreported != uint64(wantAdmitted) {
						t.Errorf("instance %s: StoreRecovered Unreported = %d, want %d", m.id, up[0].Unreported, wantAdmitted)
					}
				}

				// Every failure the instances held while Redis was away is
				// delivered once it answers, exactly once: the shared totals
				// hold them, after what Redis kept (or lost) of before. They
				// may trip the breaker; an operator's close starts afresh.
				held := uint64(size * wantAdmitted)
				for _, m := range ms {
					fctx, cancel := context.WithTimeout(context.Background(), recoveryWithin)
					if err := m.b.Flush(fctx); err != nil {
						t.Errorf("instance %s: Flush after the outage: %v", m.id, err)
					}
					cancel()
				}
				after := snapshot(t, ms[0])
				switch {
				case o.dataKept && (after.Counts.TotalSuccesses != size || after.Counts.TotalFailures != held):
					t.Errorf("after %s: TotalSuccesses %d, TotalFailures %d; want %d, %d (data kept, held failures delivered)",
						o.name, after.Counts.TotalSuccesses, after.Counts.TotalFailures, size, held)
				case !o.dataKept && (after.Generation <= before.Generation || after.Counts.TotalSuccesses != 0 || after.Counts.TotalFailures != held):
					t.Errorf("after %s: generation %d, TotalSuccesses %d, TotalFailures %d; want generation > %d, 0, %d (data lost, held failures delivered)",
						o.name, after.Generation, after.Counts.TotalSuccesses, after.Counts.TotalFailures, before.Generation, held)
				}
				if after.State != breaker.Closed {
					if err := ms[0].b.ForceClose(context.Background()); err != nil {
						t.Fatalf("ForceClose: %v", err)
					}
					everyMember(t, ms, hearWithin, "the operator's close", func(m *member) bool {
						for _, e := range m.events.of(breaker.StateChanged) {
							if e.To == breaker.Closed && e.Reason == "forced_close" {
								return true
							}
						}
						return false
					})
				}
				after = snapshot(t, ms[0])

				// Each instance reports an outcome under the generation it
				// adopted: one it had kept from before would be stale.
				succeedOnce(t, ms, dep)
				counted := snapshot(t, ms[0])
				if got, want := counted.Counts.Successes, after.Counts.Successes+size; got != want || counted.Counts.TotalStale != after.Counts.TotalStale {
					t.Errorf("after one success per instance: Successes %d, TotalStale %d; want %d, %d (every instance on generation %d)",
						got, counted.Counts.TotalStale, want, after.Counts.TotalStale, after.Generation)
				}
				for _, m := range ms {
					m.events.reset() // the outage's events were checked above
				}

				checkTripHeard(t, ms, dep, threshold, after.Generation)
			})
		}
	}
}

// TestFleetHungRedis freezes Redis (docker pause: connections stay open,
// nothing answers) under a fleet of 10 instances with FallbackLocal, calls a
// failing dependency through each, and checks that:
//
//   - no Allow or Done takes longer than the store's timeout plus slack;
//   - each instance's local breaker decides: ConsecutiveFailures calls to
//     the dependency, then local rejections; one StoreUnavailable event each;
//   - after Unpause, each instance's next call that reaches Redis (once its
//     store's cooldown is over) brings exactly one StoreRecovered event,
//     whose Unreported counts the outcomes of the calls made while Redis
//     hung;
//   - no outcome is lost silently: every outcome after Unpause is in the
//     shared totals; the failures from while Redis hung are in Unreported,
//     and the shared totals hold at most those of them besides.
//
// Redis runs the scripts it received while frozen once it thaws, after the
// callers gave up on them: a report that timed out may be counted after all.
// Those late failures may trip the shared breaker; then the fleet waits out
// the open time, probes and closes it.
//
// Every instance first finds Redis again while no transition is under way:
// while a store's one retry of Redis is in flight, its other calls still
// fail fast, and a re-read that a transition triggers is such a call.
func TestFleetHungRedis(t *testing.T) {
	const (
		size      = 10
		threshold = 3
		after     = 2 // successful calls per instance after Unpause
	)
	start := time.Now()
	defer func() { t.Logf("hung redis: %v", time.Since(start).Round(time.Millisecond)) }()
	r := fleet.StartRedis(t)
	ms := startFleet(t, r, fleetConfig{
		size: size,
		name: "payments",
		settings: breaker.Settings{
			ConsecutiveFailures: threshold,
			// Longer than the calls while Redis hangs and the first call of
			// each instance after Unpause take, so that each local breaker
			// stays open through them, and so does a shared breaker that
			// late failures trip.
			OpenDuration: 2 * time.Second,
		},
		store: store.Options{Prefix: "hung", Timeout: storeTimeout, Cooldown: storeCooldown},
	})
	dep := &dependency{}
	succeedOnce(t, ms, dep)
	before := snapshot(t, ms[0]).Counts

	r.Pause()
	res := callFleetDown(ms, dep, threshold+3)
	checkFallback(t, ms, res, breaker.FallbackLocal, threshold)
	r.Unpause()

	// Each instance calls until a call reaches Redis: until its store's
	// cooldown is over, its open local breaker rejects them. A rejected
	// call reports no outcome; an admitted one counts among those after.
	later := &dependency{}
	call := func(m *member) error {
		_, err := breaker.Execute(context.Background(), m.b, later.succeed)
		if err != nil && !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("instance %s: call after Unpause: got error %v, want nil or ErrOpen", m.id, err)
		}
		return err
	}
	for _, m := range ms {
		m := m
		eventually(t, recoveryWithin, func() string {
			return fmt.Sprintf("instance %s: no StoreRecovered event after Unpause; events:%s", m.id, m.events.describe())
		}, func() bool {
			_ = call(m)
			return len(m.events.of(breaker.StoreRecovered)) > 0
		})
	}
	// Then each makes its calls after Unpause, waiting out a trip by late
	// failures.
	for _, m := range ms {
		m := m
		for i := 0; i < after; i++ {
			eventually(t, recoveryWithin, func() string {
				return fmt.Sprintf("instance %s: calls after Unpause still rejected; events:%s", m.id, m.events.describe())
			}, func() bool { return call(m) == nil })
		}
	}

	var unreported uint64
	for _, m := range ms {
		down, up := m.events.of(breaker.StoreUnavailable), m.events.of(breaker.StoreRecovered)
		if len(down) != 1 || len(up) != 1 {
			t.Errorf("instance %s: %d StoreUnavailable and %d StoreRecovered events, want 1 and 1; events:%s",
				m.id, len(down), len(up), m.events.describe())
			continue
		}
		if up[0].Unreported != threshold {
			t.Errorf("instance %s: StoreRecovered Unreported = %d, want %d (the calls made while Redis hung)",
				m.id, up[0].Unreported, threshold)
		}
		unreported += up[0].Unreported
	}
	c := snapshot(t, ms[0]).Counts
	if got, want := c.TotalSuccesses-before.TotalSuccesses, uint64(later.calls.Load()); got != want {
		t.Errorf("shared TotalSuccesses grew by %d after Unpause, want %d: every outcome after Unpause", got, want)
	}
	late := c.TotalFailures - before.TotalFailures
	if c.TotalFailures < before.TotalFailures || late > unreported {
		t.Errorf("shared TotalFailures = %d, want %d plus at most the %d outcomes in Unreported",
			c.TotalFailures, before.TotalFailures, unreported)
	}
	t.Logf("%d of the %d outcomes in Unreported were counted by Redis after it thawed", late, unreported)
}

// TestFleetTripsOnce sends 20 instances at a failing dependency at once,
// each calling it through breaker.Execute until the breaker rejects it, and
// checks that:
//
//   - the dependency sees at least ConsecutiveFailures calls and at most
//     ConsecutiveFailures + 19: once the trip is counted, each other
//     instance may finish the one call it had been admitted to (or was
//     about to be, from its cached closed view);
//   - every outcome is in the shared totals; those that arrived after the
//     trip are stale, not applied to the open state;
//   - exactly one transition is announced, closed->open, and every
//     instance hears it once;
//   - when the open time is over and all 20 instances ask at once, exactly
//     one probe reaches the dependency; the others are rejected as
//     half-open until it succeeds and closes the breaker for all.
func TestFleetTripsOnce(t *testing.T) {
	const (
		size      = 20
		threshold = 5
		openFor   = 300 * time.Millisecond
	)
	start := time.Now()
	defer func() { t.Logf("trips once: %v", time.Since(start).Round(time.Millisecond)) }()
	r := fleet.StartRedis(t)
	ms := startFleet(t, r, fleetConfig{
		size:     size,
		name:     "payments",
		settings: breaker.Settings{ConsecutiveFailures: threshold, OpenDuration: openFor},
		store:    store.Options{Prefix: "trips-once", Timeout: time.Second},
	})
	// Every instance learns the state first, so the storm runs on the hot
	// path: Allow decides from the cached closed view, without I/O.
	for _, m := range ms {
		snapshot(t, m)
	}
	channel := ms[0].store.Channel()
	ann := subscribe(t, r, channel)

	dep := &dependency{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, should the test end early
	defer cancel()
	stopped := make([]error, size)
	begin := make(chan struct{})
	for i, m := range ms {
		i, m := i, m
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-begin
			for ctx.Err() == nil {
				_, err := breaker.Execute(ctx, m.b, dep.fail)
				if !errors.Is(err, errDependency) {
					stopped[i] = err
					return
				}
			}
			stopped[i] = ctx.Err()
		}()
	}
	stormStart := time.Now()
	close(begin)
	wg.Wait()
	calls := dep.calls.Load()
	t.Logf("the storm lasted %v", time.Since(stormStart).Round(time.Millisecond))
	var tripGen int64
	for i, err := range stopped {
		var oe *breaker.OpenError
		if !errors.As(err, &oe) || oe.Local || oe.State != breaker.Open {
			t.Fatalf("instance %s stopped with %v, want a shared *OpenError of an open breaker", ms[i].id, err)
		}
		if tripGen == 0 {
			tripGen = oe.Generation
		}
		if oe.Generation != tripGen {
			t.Errorf("instance %s rejected under generation %d, want %d like the others", ms[i].id, oe.Generation, tripGen)
		}
	}
	if calls < threshold || calls > threshold+size-1 {
		t.Errorf("dependency calls before the fleet stopped = %d, want %d to %d", calls, threshold, threshold+size-1)
	}
	t.Logf("the dependency saw %d calls before %d instances stopped (threshold %d)", calls, size, threshold)

	snap := snapshot(t, ms[0])
	c := snap.Counts
	if snap.State != breaker.Open || snap.Generation != tripGen || snap.Reason != "consecutive_failures" ||
		c.PreviousFailures != threshold || c.TotalFailures != uint64(calls) || c.TotalStale != uint64(calls)-threshold {
		t.Errorf("after the storm: state %v gen %d reason %q, PreviousFailures %d, TotalFailures %d, TotalStale %d; "+
			"want open, %d, consecutive_failures, %d, %d, %d",
			snap.State, snap.Generation, snap.Reason, c.PreviousFailures, c.TotalFailures, c.TotalStale,
			tripGen, threshold, calls, calls-threshold)
	}

	everyMember(t, ms, hearWithin, "the closed->open event", func(m *member) bool {
		return len(m.events.transitions(breaker.Closed, breaker.Open)) > 0
	})
	want := fmt.Sprintf("%d payments", tripGen)
	if got := ann.until(channel); len(got) != 1 || got[0] != want {
		t.Errorf("announcements during the storm: %q, want exactly [%q]", got, want)
	}
	local := 0
	for _, m := range ms {
		evs := m.events.of(breaker.StateChanged)
		if len(evs) != 1 || evs[0].Generation != tripGen || evs[0].Reason != "consecutive_failures" {
			t.Errorf("instance %s: want exactly one event, closed->open of generation %d; events:%s", m.id, tripGen, m.events.describe())
			continue
		}
		if evs[0].Local {
			local++
		}
	}
	if local != 1 {
		t.Errorf("%d instances say they tripped the breaker, want 1", local)
	}

	// The probe: every instance waits out its open time and asks again; the
	// one admitted holds its call until the others have been turned away.
	probe := &dependency{}
	release := make(chan struct{})
	hold := func(ctx context.Context) (struct{}, error) {
		probe.calls.Add(1)
		select {
		case <-release:
			return struct{}{}, nil
		case <-ctx.Done():
			return struct{}{}, ctx.Err()
		}
	}
	outcome := make([]string, size)
	var mu sync.Mutex
	turnedAway := 0
	for i, m := range ms {
		i, m := i, m
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				_, err := breaker.Execute(ctx, m.b, hold)
				var oe *breaker.OpenError
				switch {
				case err == nil:
					outcome[i] = "probed"
					return
				case errors.As(err, &oe) && oe.State == breaker.HalfOpen && !oe.Local:
					outcome[i] = "turned away"
					mu.Lock()
					turnedAway++
					mu.Unlock()
					return
				case errors.As(err, &oe) && oe.State == breaker.Open && !oe.Local:
					// Wait out the open time, as a retry policy would.
					select {
					case <-time.After(max(oe.NextProbeIn, time.Millisecond)):
					case <-ctx.Done():
					}
				default:
					outcome[i] = fmt.Sprintf("error %v", err)
					return
				}
			}
		}()
	}
	eventually(t, 10*time.Second, func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("%d probe calls, %d instances turned away; want 1 and %d", probe.calls.Load(), turnedAway, size-1)
	}, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return probe.calls.Load() >= 1 && turnedAway == size-1
	})
	if got := probe.calls.Load(); got != 1 {
		t.Errorf("half-open: %d calls reached the dependency, want 1", got)
	}
	close(release)
	wg.Wait()
	probed := 0
	for i, o := range outcome {
		switch o {
		case "probed":
			probed++
		case "turned away":
		default:
			t.Errorf("instance %s: %s, want probed or turned away", ms[i].id, o)
		}
	}
	if probed != 1 || probe.calls.Load() != 1 {
		t.Errorf("%d instances probed, the dependency saw %d probes; want 1, 1", probed, probe.calls.Load())
	}
	everyMember(t, ms, hearWithin, "the half-open->closed event", func(m *member) bool {
		return len(m.events.transitions(breaker.HalfOpen, breaker.Closed)) > 0
	})
	for _, m := range ms {
		if n := len(m.events.transitions(breaker.Closed, breaker.Open)); n != 1 {
			t.Errorf("instance %s: %d closed->open events in all, want 1; events:%s", m.id, n, m.events.describe())
		}
	}
	if snap := snapshot(t, ms[0]); snap.State != breaker.Closed || snap.Reason != "probes_succeeded" {
		t.Errorf("after the probe: state %v reason %q, want closed, probes_succeeded", snap.State, snap.Reason)
	}
}
