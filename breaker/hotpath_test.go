package breaker_test

// The hot path against a real redis-server: outcomes reported in batches
// are counted exactly once through a paused and a frozen Redis; a batched
// breaker decides as a synchronous one does; Close delivers what is
// pending; a resubscription re-reads a thousand breakers in a few
// pipelined round trips; a flood of forged announcements costs at most one
// read per breaker per refresh interval and changes no decision.

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

// TestExactlyOnceThroughPauseAndFreeze: 50 instances report 1,000 outcomes
// each while Redis is paused (CLIENT PAUSE 1500 ALL) and then frozen
// (SIGSTOP) for 2 s: the shared totals are exactly 50,000.
func TestExactlyOnceThroughPauseAndFreeze(t *testing.T) {
	const (
		instances = 50
		each      = 1000
	)
	srv := redistest.Start(t)
	ctx := context.Background()
	// A short store timeout: batches time out while Redis is paused or
	// frozen, and are sent again (under the same sequence number) later.
	o := store.Options{Prefix: fleetPrefix(t), Timeout: 100 * time.Millisecond, Cooldown: 200 * time.Millisecond}
	s := breaker.Settings{ConsecutiveFailures: 1 << 30, Fallback: breaker.FallbackOpen, FlushInterval: breaker.DefaultFlushInterval}
	fleet := fleetOf(t, srv, instances, "ledger", "pod", s, o)
	for _, in := range fleet { // every instance learns the breaker
		p, err := in.b.Allow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.Done(ctx, nil)
	}
	flushAll(t)
	base := fleetSnapshot(t, fleet[0].b).Counts

	var made atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, in := range fleet {
		wg.Add(1)
		go func(i int, b *breaker.Breaker) {
			defer wg.Done()
			<-start
			for j := 0; j < each; j++ {
				p, err := b.Allow(ctx)
				if err != nil {
					t.Errorf("instance %d: Allow: %v", i, err)
					return
				}
				if (i+j)%7 == 0 {
					p.Done(ctx, errFleetDown)
				} else {
					p.Done(ctx, nil)
				}
				made.Add(1)
				if j%50 == 0 {
					time.Sleep(time.Millisecond) // spread the run over the faults
				}
			}
		}(i, in.b)
	}
	close(start)
	waitMade := func(n int64) {
		deadline := time.Now().Add(fleetWait)
		for made.Load() < n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	waitMade(instances * each / 4)
	if err := srv.Client(t).Do(ctx, "CLIENT", "PAUSE", "1500", "ALL").Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	time.Sleep(1600 * time.Millisecond)
	waitMade(instances * each / 2)
	srv.Freeze()
	time.Sleep(2 * time.Second)
	srv.Thaw()
	wg.Wait()

	for _, in := range fleet {
		fctx, cancel := context.WithTimeout(ctx, fleetWait)
		err := in.b.Flush(fctx)
		cancel()
		if err != nil {
			t.Fatalf("%s: Flush: %v", in.b.Instance(), err)
		}
	}
	c := fleetSnapshot(t, fleet[0].b).Counts
	got := c.TotalSuccesses + c.TotalFailures - base.TotalSuccesses - base.TotalFailures
	if got != instances*each {
		t.Errorf("shared totals count %d outcomes, want exactly %d (%d successes, %d failures)",
			got, instances*each, c.TotalSuccesses-base.TotalSuccesses, c.TotalFailures-base.TotalFailures)
	}
	wantFailures := uint64(0)
	for i := 0; i < instances; i++ {
		for j := 0; j < each; j++ {
			if (i+j)%7 == 0 {
				wantFailures++
			}
		}
	}
	if f := c.TotalFailures - base.TotalFailures; f != wantFailures {
		t.Errorf("shared failures %d, want exactly %d", f, wantFailures)
	}
}

// flushCounter counts the outcomes the breakers it observes delivered in
// batches, and the oldest age a batch had when it was delivered.
type flushCounter struct {
	breaker.NopObserver
	n      atomic.Int64
	oldest atomic.Int64 // ns
}

func (c *flushCounter) BatchFlushed(f breaker.FlushInfo) {
	if f.Err != nil {
		return
	}
	c.n.Add(int64(f.Outcomes))
	for {
		old := c.oldest.Load()
		if int64(f.Age) <= old || c.oldest.CompareAndSwap(old, int64(f.Age)) {
			break
		}
	}
}

// traceStep is one outcome of a recorded traffic trace.
type traceStep struct {
	instance int
	fail     bool
}

// recordedTrace returns a trace of n outcomes from 20 instances: healthy at
// first, then a degrading dependency.
func recordedTrace(seed int64, n int) []traceStep {
	r := rand.New(rand.NewSource(seed))
	steps := make([]traceStep, n)
	failing := 0.1
	for i := range steps {
		if i == n/2 {
			failing = 0.7
		}
		steps[i] = traceStep{instance: r.Intn(20), fail: r.Float64() < failing}
	}
	return steps
}

// earliestRun returns the first outcome of trace that ends n failures in a
// row when a success may be ordered up to late outcomes after it happened,
// though never after a later failure of its own instance (an instance's
// outcomes keep their order); len(trace) when there is none. With late 0
// it is where a synchronous breaker trips. (Redis places outcomes at their
// batch's arrival less their age: a batch longer on its way than the next
// one's moves its success after their failures, and a batch later than
// its settling time arrives after they have settled and counted.)
func earliestRun(trace []traceStep, n, late int) int {
	var fails []int
	for e, step := range trace {
		if !step.fail {
			continue
		}
		fails = append(fails, e)
		if len(fails) < n {
			continue
		}
		splits := false
		for i := fails[len(fails)-n] + 1; i < e && !splits; i++ {
			if trace[i].fail {
				continue
			}
			splits = e-i > late
			for j := i + 1; j <= e && !splits; j++ {
				splits = trace[j].fail && trace[j].instance == trace[i].instance
			}
		}
		if !splits {
			return e
		}
	}
	return len(trace)
}

// TestDecisionParity: one recorded trace of mixed outcomes from 20
// instances, replayed at a steady pace (5 outcomes per flush interval, a
// pace a synchronous breaker keeps: each of its outcomes takes a round trip),
// trips a batched breaker within one flush interval of the outcome at which
// it trips a synchronous one, under a rate policy and under consecutive
// failures. The trip is placed at the outcome the replay had reached when
// the first instance heard of it. The pace is the trace's, not the
// machine's: an outcome is replayed only once the outcomes of two flush
// intervals before it have been delivered (a synchronous one is delivered
// before Done returns), so a machine that stalls the reports stalls the
// trace with them. A batch that a slow machine delivers later than its
// flush interval moves the decision (see FlushInfo.Age): the tolerance adds
// the lateness the batches really had, measured, once for settling and
// once for the look that trips. A success whose batch was longer on its
// way than the next failure's may be placed after that failure, and one
// later than its settling time (a stall the process had not seen yet)
// arrives after the failures around it have settled: it then no longer
// splits them, and the breaker may trip on an earlier run than a
// synchronous one. The tolerance allows the runs such late successes could
// join.
func TestDecisionParity(t *testing.T) {
	const (
		pace     = time.Millisecond
		interval = breaker.DefaultFlushInterval
		perFlush = int(interval / pace)
	)
	srv := redistest.Start(t)
	ctx := context.Background()
	policies := map[string]breaker.Settings{
		// The window holds the whole trace, so that the decision depends
		// on the outcomes counted and not on how fast the machine replays
		// them (a synchronous replay falls behind its pace on a loaded
		// machine, and a shorter window would hold fewer outcomes).
		"failure-rate": {ConsecutiveFailures: breaker.Off, FailureRate: 0.3, MinimumCalls: 50,
			Window: time.Minute, WindowBuckets: 20},
		"consecutive": {ConsecutiveFailures: 6},
	}
	trace := recordedTrace(7, 2000)
	for name, s := range policies {
		t.Run(name, func(t *testing.T) {
			// replay returns the outcome of the trace at which the breaker
			// tripped, and how late the latest batch was delivered.
			replay := func(mode breaker.Reporting) (int, time.Duration) {
				s := s
				s.Reporting = mode
				s.FlushInterval = interval
				s.OpenDuration = time.Hour
				o := store.Options{Prefix: fleetPrefix(t) + "-" + mode.String(), Timeout: 5 * time.Second}
				flushed := &flushCounter{}
				s.Observer = flushed
				fleet := fleetOf(t, srv, 20, "parity", "pod", s, o)
				var reached, tripped atomic.Int64 // tripped: outcome index + 1
				done := make([]int64, len(trace)) // outcomes reported before each step
				for _, in := range fleet {
					in.b.Listen(func(e breaker.Event) {
						if e.Kind == breaker.StateChanged && e.To == breaker.Open {
							tripped.CompareAndSwap(0, reached.Load()+1)
						}
					})
				}
				began := time.Now()
				var reported int64
				for i, step := range trace {
					if j := i - 2*perFlush; mode == breaker.ReportBatched && j >= 0 {
						// The trace waits for the reports of its past, and
						// goes on at its pace from there.
						fleetPoll(t, "outcomes delivered", func() bool { return flushed.n.Load() >= done[j] })
						if d := time.Since(began); d > time.Duration(i)*pace {
							began = began.Add(d - time.Duration(i)*pace)
						}
					}
					// A steady pace: the trace's outcomes happen at their
					// times (a synchronous replay that fell behind catches
					// up). It sleeps meanwhile, so that the instances run.
					time.Sleep(time.Duration(i)*pace - time.Since(began))
					done[i] = reported
					if tripped.Load() != 0 {
						break
					}
					reached.Store(int64(i))
					p, err := fleet[step.instance].b.Allow(ctx)
					if err != nil {
						continue // this instance heard of the trip
					}
					if step.fail {
						p.Done(ctx, errFleetDown)
					} else {
						p.Done(ctx, nil)
					}
					reported++
				}
				deadline := time.Now().Add(fleetWait)
				for tripped.Load() == 0 && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				if tripped.Load() == 0 {
					t.Fatalf("%v: the trace did not trip the breaker: %+v", mode, fleetSnapshot(t, fleet[0].b))
				}
				return int(tripped.Load() - 1), time.Duration(flushed.oldest.Load())
			}
			sync, _ := replay(breaker.ReportSync)
			batched, oldest := replay(breaker.ReportBatched)
			// Beyond its interval, a batch was late by the machine: failures
			// settle that much later, and the look that finds them settled
			// may be as late as a batch was; a trip is heard a hop after it
			// is made.
			late := 2*max(0, oldest-interval) + time.Millisecond
			slack := int((late + pace - 1) / pace)
			t.Logf("tripped at outcome %d (sync) and %d (batched): %+.1f flush intervals (%d outcomes each); "+
				"the latest batch was delivered %v after its first outcome (tolerance: one interval + %d outcomes)",
				sync, batched, float64(batched-sync)/float64(perFlush), perFlush, oldest.Round(10*time.Microsecond), slack)
			// Early, a batched breaker can trip only on failures that a
			// late success did not split in time: no earlier than the first
			// run the trace makes when successes are ordered up to slack
			// outcomes after they happened.
			earliest := sync - perFlush - slack
			if s.ConsecutiveFailures != breaker.Off {
				// (a synchronous trip is heard at its failure, or a little
				// later on a loaded machine, never before it)
				if first := earliestRun(trace, int(s.ConsecutiveFailures), 0); sync < first {
					t.Fatalf("the trace's first run of %d failures ends at outcome %d; the synchronous breaker tripped at %d", s.ConsecutiveFailures, first, sync)
				}
				earliest = min(earliest, earliestRun(trace, int(s.ConsecutiveFailures), slack))
			}
			if batched < earliest || batched > sync+perFlush+slack {
				t.Errorf("batched breaker tripped at outcome %d, synchronous at %d: want within one flush interval (%d outcomes) + %d, "+
					"and no earlier than outcome %d", batched, sync, perFlush, slack, earliest)
			}
		})
	}
}

// TestCloseDeliversPendingOutcomes: outcomes counted locally are in the
// shared totals once Close returns.
func TestCloseDeliversPendingOutcomes(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	o := store.Options{Prefix: fleetPrefix(t), Timeout: 5 * time.Second}
	s := breaker.Settings{FlushInterval: time.Hour} // nothing is due before Close
	a := fleetStart(t, srv, "close", s, o)
	reader := fleetStart(t, srv, "close", breaker.Settings{}, o)
	for i := 0; i < 500; i++ {
		p, err := a.b.Allow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.Done(ctx, nil)
	}
	if err := a.b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	snap, err := reader.b.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Counts.TotalSuccesses != 500 {
		t.Errorf("after Close: TotalSuccesses %d, want 500", snap.Counts.TotalSuccesses)
	}
	if _, err := a.b.Allow(ctx); err != breaker.ErrClosed {
		t.Errorf("Allow after Close: got %v, want ErrClosed", err)
	}
}

// pipelineHook counts the round trips a client makes, and the reads.
type pipelineHook struct {
	trips, reads atomic.Int64
}

func (h *pipelineHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *pipelineHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := strings.ToLower(cmd.Name()); n != "subscribe" && n != "ping" {
			h.trips.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *pipelineHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.trips.Add(1)
		for _, c := range cmds {
			if strings.EqualFold(c.Name(), "hmget") {
				h.reads.Add(1)
			}
		}
		return next(ctx, cmds)
	}
}

// quiet waits until the client has made no round trip for 100ms (at most
// fleetWait): what the setup started has ended.
func (h *pipelineHook) quiet(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(fleetWait)
	last := h.trips.Load()
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		n := h.trips.Load()
		if n == last {
			return
		}
		last = n
	}
	t.Fatalf("the client kept making round trips for %v", fleetWait)
}

// manyBreakers makes n breakers on one store whose client hook counts
// round trips, each having learnt its shared state.
func manyBreakers(t *testing.T, srv *redistest.Server, n int, s breaker.Settings, o store.Options) (*store.Store, []*breaker.Breaker, *pipelineHook) {
	t.Helper()
	c := srv.Client(t)
	h := &pipelineHook{}
	c.AddHook(h)
	st, err := store.New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ctx := context.Background()
	bs := make([]*breaker.Breaker, n)
	for i := range bs {
		b, err := breaker.New(fmt.Sprintf("dep-%04d", i), st, s)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		p, err := b.Allow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.Done(ctx, nil)
		bs[i] = b
	}
	return st, bs, h
}

// TestResubscribeReadsInBatches: after its subscription is cut, a process
// with 1,000 breakers re-reads them all in at most one round trip per 100
// breakers.
func TestResubscribeReadsInBatches(t *testing.T) {
	const n = 1000
	srv := redistest.Start(t)
	ctx := context.Background()
	o := store.Options{Prefix: fleetPrefix(t), Timeout: 5 * time.Second}
	s := breaker.Settings{RefreshInterval: time.Hour}
	_, _, h := manyBreakers(t, srv, n, s, o)
	raw := srv.Client(t)
	// Let the first reads (after the first subscription) and flushes end.
	h.quiet(t)
	trips, reads := h.trips.Load(), h.reads.Load()
	if err := raw.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatalf("CLIENT KILL: %v", err)
	}
	fleetPoll(t, "every breaker re-read", func() bool { return h.reads.Load()-reads >= n })
	h.quiet(t) // and any round trip that follows them
	if got, most := h.trips.Load()-trips, int64(n/100); got > most {
		t.Errorf("re-reading %d breakers after a resubscription took %d round trips, want at most %d", n, got, most)
	} else {
		t.Logf("re-reading %d breakers after a resubscription took %d round trips", n, got)
	}
}

// TestForgedAnnouncementsAreCheap: a flood of 1,000 forged announcements a
// second costs each breaker at most one read per refresh interval, and
// changes no decision.
func TestForgedAnnouncementsAreCheap(t *testing.T) {
	const (
		n        = 50
		interval = 500 * time.Millisecond
		flood    = 2 * time.Second
	)
	srv := redistest.Start(t)
	ctx := context.Background()
	o := store.Options{Prefix: fleetPrefix(t), Timeout: 5 * time.Second}
	s := breaker.Settings{RefreshInterval: interval}
	st, bs, h := manyBreakers(t, srv, n, s, o)
	raw := srv.Client(t)
	h.quiet(t)
	reads := h.reads.Load()
	began := time.Now()
	tick := time.NewTicker(time.Millisecond)
	sent := 0
	for time.Since(began) < flood {
		<-tick.C
		name := fmt.Sprintf("dep-%04d", sent%n)
		gen := time.Now().UnixMilli()*1000 + int64(sent) // always "newer"
		if err := raw.Publish(ctx, st.Channel(), fmt.Sprintf("%d %s", gen, name)).Err(); err != nil {
			t.Fatal(err)
		}
		sent++
	}
	tick.Stop()
	elapsed := time.Since(began)
	got := h.reads.Load() - reads
	// Each breaker: one read that finds the announcement false, then none
	// until its periodic read, which also counts.
	most := int64(n) * (int64(elapsed/interval) + 2)
	t.Logf("%d forged announcements in %v: %d reads for %d breakers (at most %d allowed)", sent, elapsed, got, n, most)
	if got > most {
		t.Errorf("%d forged announcements caused %d reads, want at most %d (one per breaker per %v)", sent, got, most, interval)
	}
	for _, b := range bs {
		if b.State() != breaker.Closed {
			t.Errorf("%s: state %v after forged announcements, want closed", b.Name(), b.State())
		}
		if _, err := b.Allow(ctx); err != nil {
			t.Errorf("%s: Allow after forged announcements: %v", b.Name(), err)
		}
	}
}

// TestAnnouncedTripNeedsNoRead: an instance that has heard from the store
// takes another instance's trip from the announcement, which the store
// verified, without reading the state; what it adopts is what the trip's
// reply said.
func TestAnnouncedTripNeedsNoRead(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	o := store.Options{Prefix: fleetPrefix(t), Timeout: 5 * time.Second}
	s := breaker.Settings{ConsecutiveFailures: 1, OpenDuration: time.Hour, RefreshInterval: time.Hour}
	_, bs, h := manyBreakers(t, srv, 1, s, o)
	follower := bs[0]
	opened := make(chan breaker.Event, 1)
	follower.Listen(func(e breaker.Event) {
		if e.Kind == breaker.StateChanged && e.To == breaker.Open {
			opened <- e
		}
	})
	st, err := store.New(srv.Client(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	s.Instance = "tripper"
	tripper, err := breaker.New(follower.Name(), st, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tripper.Close() })
	h.quiet(t)
	trips := h.trips.Load()
	p, err := tripper.Allow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.Done(ctx, errors.New("dependency down"))
	var e breaker.Event
	select {
	case e = <-opened:
	case <-time.After(fleetWait):
		t.Fatalf("the follower did not open within %v", fleetWait)
	}
	if got := h.trips.Load() - trips; got != 0 {
		t.Errorf("the follower made %d round trips to hear the trip, want 0", got)
	}
	if e.Instance != "tripper" || e.Reason != "consecutive_failures" || e.Counts.PreviousFailures != 1 ||
		e.NextProbeIn <= 59*time.Minute || e.From != breaker.Closed {
		t.Errorf("the follower's event: %+v; want closed -> open by tripper after 1 failure, next probe in about 1h", e)
	}
	if _, err := follower.Allow(ctx); !errors.As(err, new(*breaker.OpenError)) {
		t.Errorf("the follower's Allow after the trip: %v, want an *OpenError", err)
	}
}
