package breaker_test

// Fleet tests: many instances (each with its own Redis client, store and
// breaker, as separate pods would have) sharing one breaker in a real
// redis-server started by internal/redistest. They prove what miniredis
// cannot: atomicity under concurrency, Redis's own clock, pub/sub, outages
// of a real server, and Redis Cluster.

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/fakeclock"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/lua"
	"github.com/breakwater-go/breakwater/store"
)

// fleetWait bounds every wait for something that should happen within
// milliseconds; it is generous so that a slow machine under -race passes.
const fleetWait = 10 * time.Second

var errFleetDown = errors.New("dependency down")

// fleetScripts maps each script's SHA1 to its name, so that a hook can tell
// which script a store runs.
var fleetScripts = func() map[string]string {
	m := map[string]string{}
	for name, src := range map[string]string{"acquire": lua.Acquire(), "record": lua.Record(),
		"force": lua.Force(), "read": lua.Read()} {
		sum := sha1.Sum([]byte(src))
		m[hex.EncodeToString(sum[:])] = name
	}
	return m
}()

// fleetHook counts the store's script attempts on a client, as they start
// and as they end: every script call starts with one EVALSHA (go-redis's
// retries and a NOSCRIPT fallback to EVAL happen under it), so EVALSHAs
// count attempts.
type fleetHook struct {
	mu     sync.Mutex
	starts map[string]int
	ends   map[string]int
	trips  atomic.Int64 // round trips that carried a script or a read
}

func (h *fleetHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *fleetHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		script := ""
		if args := cmd.Args(); strings.EqualFold(cmd.Name(), "evalsha") && len(args) > 1 {
			if sha, ok := args[1].(string); ok {
				script = fleetScripts[sha] + "."
			}
		}
		if script == "" {
			return next(ctx, cmd)
		}
		h.trips.Add(1)
		h.count(&h.starts, script)
		err := next(ctx, cmd)
		h.count(&h.ends, script)
		return err
	}
}

// ProcessPipelineHook counts the scripts of a pipeline, and its HMGETs as
// reads (a plain read is HMGET and TIME, without a script).
func (h *fleetHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var names []string
		for _, cmd := range cmds {
			args := cmd.Args()
			switch {
			case strings.EqualFold(cmd.Name(), "evalsha") && len(args) > 1:
				if sha, ok := args[1].(string); ok {
					names = append(names, fleetScripts[sha]+".")
				}
			case strings.EqualFold(cmd.Name(), "hmget"):
				names = append(names, "read.")
			}
		}
		if len(names) > 0 {
			h.trips.Add(1)
		}
		for _, n := range names {
			h.count(&h.starts, n)
		}
		err := next(ctx, cmds)
		for _, n := range names {
			h.count(&h.ends, n)
		}
		return err
	}
}

func (h *fleetHook) count(m *map[string]int, script string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[script]++
}

func (h *fleetHook) sum(m *map[string]int, name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for k, v := range *m {
		if name == "" || k == name+"." {
			n += v
		}
	}
	return n
}

// attempts returns how many calls of the named script (of all scripts when
// name is "") were started.
func (h *fleetHook) attempts(name string) int { return h.sum(&h.starts, name) }

// finished returns how many calls of the named script (of all scripts when
// name is "") have ended.
func (h *fleetHook) finished(name string) int { return h.sum(&h.ends, name) }

// fleetInstance is one pod: its own client, store and breaker, and a
// listener that keeps every event.
type fleetInstance struct {
	b        *breaker.Breaker
	st       *store.Store
	hook     *fleetHook
	events   chan breaker.Event
	overflow atomic.Bool
}

// fleetAttach makes an instance on client. Everything is closed when the
// test ends, the breaker first.
func fleetAttach(t *testing.T, client redis.UniversalClient, name string, s breaker.Settings, o store.Options) *fleetInstance {
	t.Helper()
	in := &fleetInstance{hook: &fleetHook{}, events: make(chan breaker.Event, 1024)}
	client.AddHook(in.hook)
	st, err := store.New(client, o)
	if err != nil {
		t.Fatalf("store.New: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	in.st = st
	b, err := breaker.New(name, st, reportingFor(s))
	if err != nil {
		t.Fatalf("breaker.New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	in.b = b
	track(t, b)
	b.Listen(func(e breaker.Event) {
		select {
		case in.events <- e:
		default:
			in.overflow.Store(true)
		}
	})
	return in
}

// fleetStart makes an instance with its own client of srv.
func fleetStart(t *testing.T, srv *redistest.Server, name string, s breaker.Settings, o store.Options, copts ...func(*redis.Options)) *fleetInstance {
	t.Helper()
	return fleetAttach(t, srv.Client(t, copts...), name, s, o)
}

// fleetOf makes n instances of the same breaker, instance i named "<tag>-i".
func fleetOf(t *testing.T, srv *redistest.Server, n int, name, tag string, s breaker.Settings, o store.Options) []*fleetInstance {
	t.Helper()
	fleet := make([]*fleetInstance, n)
	for i := range fleet {
		si := s
		si.Instance = fmt.Sprintf("%s-%d", tag, i)
		fleet[i] = fleetStart(t, srv, name, si, o)
	}
	return fleet
}

// fleetAwait returns the first event of in for which match is true,
// discarding the others, or fails the test after fleetWait.
func fleetAwait(t *testing.T, in *fleetInstance, what string, match func(breaker.Event) bool) breaker.Event {
	t.Helper()
	timeout := time.NewTimer(fleetWait)
	defer timeout.Stop()
	for {
		select {
		case e := <-in.events:
			if match(e) {
				return e
			}
		case <-timeout.C:
			t.Fatalf("instance %s: no %s event within %v (state %v)", in.b.Instance(), what, fleetWait, in.b.State())
			return breaker.Event{}
		}
	}
}

// fleetChangedTo matches a StateChanged event to state to.
func fleetChangedTo(to breaker.State) func(breaker.Event) bool {
	return func(e breaker.Event) bool { return e.Kind == breaker.StateChanged && e.To == to }
}

// fleetAwaitAll waits until every instance heard a StateChanged event to
// state to and returns the events.
func fleetAwaitAll(t *testing.T, fleet []*fleetInstance, to breaker.State) []breaker.Event {
	t.Helper()
	out := make([]breaker.Event, len(fleet))
	for i, in := range fleet {
		out[i] = fleetAwait(t, in, "state-changed to "+to.String(), fleetChangedTo(to))
	}
	return out
}

// fleetDrain returns the events in's listener has heard and nobody took.
func fleetDrain(in *fleetInstance) []breaker.Event {
	var out []breaker.Event
	for {
		select {
		case e := <-in.events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func fleetSnapshot(t *testing.T, b *breaker.Breaker) breaker.Snapshot {
	t.Helper()
	flushAll(t)
	if err := b.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	s, err := b.Snapshot(context.Background())
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return s
}

// fleetTrip reports n failures through b, each on its own permit.
func fleetTrip(t *testing.T, b *breaker.Breaker, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		p, err := b.Allow(ctx)
		if err != nil {
			t.Fatalf("Allow %d of %d while tripping: %v", i+1, n, err)
		}
		p.Done(ctx, errFleetDown)
	}
}

// fleetWaitOpenOver polls the shared state until Redis's clock says the
// open time is over, waiting each time as long as the store says is left.
func fleetWaitOpenOver(t *testing.T, b *breaker.Breaker) {
	t.Helper()
	deadline := time.Now().Add(fleetWait)
	for {
		s := fleetSnapshot(t, b)
		if s.State != breaker.Open {
			t.Fatalf("waiting for the open time to end: state %v, want %v", s.State, breaker.Open)
		}
		if s.NextProbeIn <= 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("open time not over after %v (next probe in %v)", fleetWait, s.NextProbeIn)
		}
		<-time.After(s.NextProbeIn)
	}
}

// fleetOpenError returns err as an *OpenError or fails the test.
func fleetOpenError(t *testing.T, who string, err error) *breaker.OpenError {
	t.Helper()
	var oe *breaker.OpenError
	if !errors.As(err, &oe) || !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("%s: Allow: got error %v, want an *OpenError matching ErrOpen", who, err)
	}
	return oe
}

func fleetPrefix(t *testing.T) string {
	return "fleet-" + strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
}

// TestFleetConcurrentFailuresTripOnce: 50 instances take 1,000 permits each
// while closed, then report all 50,000 failures at once. Every failure is
// counted (the ones that arrive after the trip as stale), the breaker trips
// exactly once, one transition is published, and every instance hears it
// exactly once.
func TestFleetConcurrentFailuresTripOnce(t *testing.T) {
	const (
		instances = 50
		permits   = 1000
		workers   = 20 // goroutines per instance reporting outcomes
		threshold = 5
	)
	srv := redistest.Start(t)
	ctx := context.Background()
	const name = "payments"
	s := breaker.Settings{ConsecutiveFailures: threshold, OpenDuration: time.Minute}
	o := store.Options{Prefix: fleetPrefix(t), Timeout: 5 * time.Second}

	// A raw subscriber counts what is published, from before the first call.
	raw := srv.Client(t)
	ps := raw.Subscribe(ctx, o.Prefix+":v1:events")
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	msgs := ps.Channel()

	fleet := fleetOf(t, srv, instances, name, "pod", s, o)
	if got, want := fleet[0].st.Channel(), o.Prefix+":v1:events"; got != want {
		t.Fatalf("Channel() = %q, want %q", got, want)
	}
	before := fleetSnapshot(t, fleet[0].b)

	all := make([][]breaker.Permit, instances)
	for i, in := range fleet {
		all[i] = make([]breaker.Permit, permits)
		for j := range all[i] {
			p, err := in.b.Allow(ctx)
			if err != nil {
				t.Fatalf("instance %d: Allow %d while closed: %v", i, j, err)
			}
			if p.Probe() {
				t.Fatalf("instance %d: Allow %d while closed returned a probe", i, j)
			}
			all[i][j] = p
		}
	}

	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range fleet {
		for w := 0; w < workers; w++ {
			mine := all[i][w*permits/workers : (w+1)*permits/workers]
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for _, p := range mine {
					p.Done(ctx, errFleetDown)
				}
			}()
		}
	}
	began := time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d failures reported by %d goroutines in %v", instances*permits, instances*workers, time.Since(began))

	// Outcomes reported after the trip wait in batches: deliver them all.
	for _, in := range fleet {
		if err := in.b.Flush(ctx); err != nil {
			t.Fatalf("Flush: %v", err)
		}
	}
	snap := fleetSnapshot(t, fleet[0].b)
	c := snap.Counts
	// The failures that tripped the breaker are those of the batches counted
	// before the trip: at least the threshold; every later one is stale.
	if c.PreviousFailures < threshold || c.PreviousFailures > instances*workers*threshold {
		t.Errorf("Snapshot PreviousFailures: got %d, want at least %d", c.PreviousFailures, threshold)
	}
	for _, tc := range []struct {
		what      string
		got, want interface{}
	}{
		{"State", snap.State, breaker.Open},
		{"Reason", snap.Reason, "consecutive_failures"},
		{"Generation", snap.Generation, before.Generation + 1},
		{"TotalFailures", c.TotalFailures, uint64(instances * permits)},
		{"TotalSuccesses", c.TotalSuccesses, uint64(0)},
		{"TotalStale", c.TotalStale, uint64(instances*permits) - c.PreviousFailures},
		{"Trips", c.Trips, uint64(1)},
	} {
		if tc.got != tc.want {
			t.Errorf("Snapshot %s: got %v, want %v", tc.what, tc.got, tc.want)
		}
	}

	// Every message published before the sentinel has arrived once the
	// sentinel has: Redis delivers a connection's messages in order.
	const sentinel = "fleet-sentinel"
	if err := raw.Publish(ctx, o.Prefix+":v1:events", sentinel).Err(); err != nil {
		t.Fatalf("publish sentinel: %v", err)
	}
	var published []string
	timeout := time.After(fleetWait)
collect:
	for {
		select {
		case m := <-msgs:
			if m.Payload == sentinel {
				break collect
			}
			if strings.HasPrefix(m.Payload, "settle ") {
				continue // a call to report at once, not a transition
			}
			head, _, _ := strings.Cut(m.Payload, "\n") // "<generation> <name>"
			published = append(published, head)
		case <-timeout:
			t.Fatalf("sentinel not received within %v; got %q", fleetWait, published)
		}
	}
	if want := []string{fmt.Sprintf("%d %s", before.Generation+1, name)}; fmt.Sprint(published) != fmt.Sprint(want) {
		t.Errorf("published: got %q, want %q (exactly one transition)", published, want)
	}

	for i, in := range fleet {
		e := fleetAwait(t, in, "first", func(breaker.Event) bool { return true })
		if e.Kind != breaker.StateChanged || e.From != breaker.Closed || e.To != breaker.Open ||
			e.Generation != before.Generation+1 || e.Reason != "consecutive_failures" {
			t.Errorf("instance %d: first event %v %v->%v gen %d (%s), want state-changed closed->open gen %d (consecutive_failures)",
				i, e.Kind, e.From, e.To, e.Generation, e.Reason, before.Generation+1)
		}
	}
	// Close waits for background re-reads; after it no event can come.
	for i, in := range fleet {
		_ = in.b.Close()
		if extra := fleetDrain(in); len(extra) > 0 || in.overflow.Load() {
			t.Errorf("instance %d: got %d more events after closed->open (%+v), want none", i, len(extra), extra)
		}
	}
}

// fleetHammer calls Allow on every instance from its own goroutine until
// the time until, pausing after a rejection for at most 10ms (less when
// the rejection says a place frees sooner). It returns the probe permits
// granted and how many plain (non-probe) permits were.
func fleetHammer(t *testing.T, fleet []*fleetInstance, until time.Time) (probes []breaker.Permit, plain int) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	ctx := context.Background()
	for _, in := range fleet {
		in := in
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				left := time.Until(until)
				if left <= 0 {
					return
				}
				p, err := in.b.Allow(ctx)
				if err == nil {
					mu.Lock()
					if p.Probe() {
						probes = append(probes, p)
					} else {
						plain++
					}
					mu.Unlock()
					continue
				}
				var oe *breaker.OpenError
				if !errors.As(err, &oe) {
					t.Errorf("instance %s: Allow: %v, want nil or an *OpenError", in.b.Instance(), err)
					return
				}
				pause := min(oe.NextProbeIn, 10*time.Millisecond, left)
				if pause <= 0 {
					pause = time.Millisecond
				}
				<-time.After(pause)
			}
		}()
	}
	wg.Wait()
	return probes, plain
}

// fleetInTime fails the test when a hammering phase that began at start
// ran for a whole lease: a lease granted in it could have expired in it,
// and the probe count would prove nothing.
func fleetInTime(t *testing.T, start time.Time, lease time.Duration) {
	t.Helper()
	if took := time.Since(start); took >= lease {
		t.Fatalf("a phase meant to last half a lease took %v, the whole lease %v: machine too slow for this test", took, lease)
	}
}

// TestFleetHalfOpenProbeLeases: while half-open, the whole fleet gets
// exactly MaxProbes probes however hard it asks; a prober that vanishes
// frees its place when its lease expires, and exactly MaxProbes new probes
// follow; a failed probe reopens the breaker and a successful one closes it,
// for every instance.
func TestFleetHalfOpenProbeLeases(t *testing.T) {
	const (
		instances = 50
		open      = 200 * time.Millisecond
		lease     = time.Second
	)
	for _, maxProbes := range []int{1, 3} {
		maxProbes := maxProbes
		t.Run(fmt.Sprintf("MaxProbes=%d", maxProbes), func(t *testing.T) {
			srv := redistest.Start(t)
			ctx := context.Background()
			s := breaker.Settings{ConsecutiveFailures: 3, OpenDuration: open, ProbeLease: lease, MaxProbes: maxProbes}
			fleet := fleetOf(t, srv, instances, "search", "pod", s, store.Options{Prefix: fleetPrefix(t), Timeout: 5 * time.Second})
			b0 := fleet[0].b

			fleetTrip(t, b0, 3)
			fleetAwaitAll(t, fleet, breaker.Open)
			fleetWaitOpenOver(t, b0)

			// Phase 1: every probe granted now expires after the phase ends.
			start := time.Now()
			probes, plain := fleetHammer(t, fleet, start.Add(lease/2))
			fleetInTime(t, start, lease)
			if len(probes) != maxProbes || plain != 0 {
				t.Fatalf("half-open, first %v: got %d probes and %d plain permits, want %d probes and none plain",
					lease/2, len(probes), plain, maxProbes)
			}
			snap := fleetSnapshot(t, b0)
			if snap.State != breaker.HalfOpen {
				t.Fatalf("after the first probes: state %v, want %v", snap.State, breaker.HalfOpen)
			}
			gen := snap.Generation
			for _, p := range probes {
				if !p.Probe() {
					t.Fatal("a probe permit reports Probe() false")
				}
			}
			// The probers vanish: their permits are never reported. Every
			// lease of phase 1 expires within the next lease time, and none
			// granted in it can expire before it ends.
			probes, plain = fleetHammer(t, fleet, time.Now().Add(lease))
			if len(probes) != maxProbes || plain != 0 {
				t.Fatalf("after the leases expired: got %d probes and %d plain permits, want %d probes and none plain",
					len(probes), plain, maxProbes)
			}
			if got := fleetSnapshot(t, b0); got.State != breaker.HalfOpen || got.Generation != gen {
				t.Fatalf("after the leases expired: state %v gen %d, want %v gen %d (expiry is no transition)",
					got.State, got.Generation, breaker.HalfOpen, gen)
			}

			// A failed probe reopens the breaker for everyone.
			probes[0].Done(ctx, errFleetDown)
			for i, e := range fleetAwaitAll(t, fleet, breaker.Open) {
				if e.From != breaker.HalfOpen || e.Reason != "probe_failed" || e.Generation != gen+1 {
					t.Errorf("instance %d: got %v->%v gen %d (%s), want half-open->open gen %d (probe_failed)",
						i, e.From, e.To, e.Generation, e.Reason, gen+1)
				}
			}
			// The other probes of that half-open period report late: stale.
			for _, p := range probes[1:] {
				p.Done(ctx, nil)
			}
			snap = fleetSnapshot(t, b0)
			if snap.State != breaker.Open || snap.Counts.Trips != 2 || snap.Counts.TotalStale != uint64(maxProbes-1) {
				t.Fatalf("after a failed probe and %d late successes: state %v trips %d stale %d, want open, 2 trips, %d stale",
					maxProbes-1, snap.State, snap.Counts.Trips, snap.Counts.TotalStale, maxProbes-1)
			}

			// A successful probe closes it for everyone.
			fleetWaitOpenOver(t, b0)
			start = time.Now()
			probes, plain = fleetHammer(t, fleet, start.Add(lease/2))
			fleetInTime(t, start, lease)
			if len(probes) != maxProbes || plain != 0 {
				t.Fatalf("half-open again: got %d probes and %d plain permits, want %d probes and none plain",
					len(probes), plain, maxProbes)
			}
			probes[0].Done(ctx, nil)
			for i, e := range fleetAwaitAll(t, fleet, breaker.Closed) {
				if e.From != breaker.HalfOpen || e.Reason != "probes_succeeded" {
					t.Errorf("instance %d: got %v->%v (%s), want half-open->closed (probes_succeeded)", i, e.From, e.To, e.Reason)
				}
			}
			for _, p := range probes[1:] {
				p.Done(ctx, nil)
			}
			for i, in := range fleet {
				p, err := in.b.Allow(ctx)
				if err != nil || p.Probe() {
					t.Fatalf("instance %d after close: Allow = %v, probe %v; want a plain permit", i, err, p.Probe())
				}
				p.Done(ctx, nil)
			}
			if snap := fleetSnapshot(t, b0); snap.State != breaker.Closed || snap.Counts.Successes != instances {
				t.Errorf("after close: state %v successes %d, want closed, %d", snap.State, snap.Counts.Successes, instances)
			}
		})
	}
}

// TestFleetClockSkew: instances whose local clocks are an hour behind,
// right, and an hour ahead (and jump together by hours) agree on every
// decision, because every shared decision is taken on Redis's clock: the
// same Allow results and states through trip, open, half-open and close,
// and the same time until the next probe.
func TestFleetClockSkew(t *testing.T) {
	const (
		perSkew = 3
		open    = 1500 * time.Millisecond
		lease   = 10 * time.Second
		// rounding: Redis answers in whole milliseconds.
		rounding = 2 * time.Millisecond
		// stepped: Redis's clock is its host's wall clock, which need not
		// be monotonic (a host may set it back a little between two
		// answers); an hour of local skew is what this test looks for.
		stepped = 20 * time.Millisecond
	)
	srv := redistest.Start(t)
	ctx := context.Background()
	o := store.Options{Prefix: fleetPrefix(t), Timeout: 5 * time.Second}
	base := time.Now()
	var fleet []*fleetInstance
	var clocks []*fakeclock.Clock
	for _, skew := range []time.Duration{-time.Hour, 0, time.Hour} {
		for i := 0; i < perSkew; i++ {
			c := fakeclock.New(base.Add(skew))
			s := breaker.Settings{ConsecutiveFailures: 3, OpenDuration: open, ProbeLease: lease,
				Clock: c, Instance: fmt.Sprintf("skew%+dh-%d", int(skew.Hours()), i)}
			fleet = append(fleet, fleetStart(t, srv, "ledger", s, o))
			clocks = append(clocks, c)
		}
	}
	advance := func(d time.Duration) {
		for _, c := range clocks {
			c.Advance(d)
		}
	}
	// allowAll asks every instance once and returns the permits (nil for a
	// rejection) and the rejections' NextProbeIn.
	allowAll := func(step string) ([]breaker.Permit, []time.Duration) {
		t.Helper()
		permits := make([]breaker.Permit, len(fleet))
		waits := make([]time.Duration, len(fleet))
		for i, in := range fleet {
			p, err := in.b.Allow(ctx)
			if err != nil {
				waits[i] = fleetOpenError(t, step+": "+in.b.Instance(), err).NextProbeIn
				continue
			}
			permits[i] = p
		}
		return permits, waits
	}
	wantStates := func(step string, want breaker.State) {
		t.Helper()
		for _, in := range fleet {
			if got := in.b.State(); got != want {
				t.Errorf("%s: instance %s: State() = %v, want %v", step, in.b.Instance(), got, want)
			}
		}
	}
	// agree checks that every rejection says the time until the next probe
	// that Redis's clock said, between what it said just before the step
	// (hi) and just after it (lo): local clocks play no part.
	agree := func(step string, waits []time.Duration, lo, hi time.Duration) {
		t.Helper()
		for i, w := range waits {
			if w < lo-rounding-stepped || w > hi+rounding+stepped {
				t.Errorf("%s: instance %s: NextProbeIn %v, want between %v and %v", step, fleet[i].b.Instance(), w, lo, hi)
			}
		}
	}

	// Closed: everyone admits.
	permits, _ := allowAll("closed")
	for i, p := range permits {
		if p == (breaker.Permit{}) || p.Probe() {
			t.Fatalf("closed: instance %s: got %v, want a plain permit", fleet[i].b.Instance(), p)
		}
		p.Done(ctx, nil)
	}
	wantStates("closed", breaker.Closed)

	// Trip with one failure from each skew group.
	for _, i := range []int{0, perSkew, 2 * perSkew} {
		p, err := fleet[i].b.Allow(ctx)
		if err != nil {
			t.Fatalf("tripping: Allow: %v", err)
		}
		p.Done(ctx, errFleetDown)
	}
	fleetAwaitAll(t, fleet, breaker.Open)
	wantStates("open", breaker.Open)
	snap := fleetSnapshot(t, fleet[perSkew].b)
	if snap.State != breaker.Open {
		t.Fatalf("after 3 failures: state %v, want open", snap.State)
	}
	permits, waits := allowAll("open")
	for i, p := range permits {
		if p != (breaker.Permit{}) {
			t.Fatalf("open: instance %s admitted a call", fleet[i].b.Instance())
		}
	}
	// Each instance turned the wait of the reply it adopted (before the
	// snapshot) into a local deadline; its clock has not moved since.
	agree("open", waits, snap.NextProbeIn, open)

	// Every local clock jumps an hour: each instance's own deadline is long
	// past, but Redis's open time is not, so everyone asks and is rejected.
	advance(time.Hour)
	permits, waits = allowAll("open, local clocks an hour on")
	after := fleetSnapshot(t, fleet[perSkew].b)
	if after.State != breaker.Open || after.NextProbeIn <= 0 {
		t.Fatalf("the open time ran out during the step (state %v, next probe in %v): machine too slow for OpenDuration %v",
			after.State, after.NextProbeIn, open)
	}
	for i, p := range permits {
		if p != (breaker.Permit{}) {
			t.Fatalf("open, local clocks an hour on: instance %s admitted a call", fleet[i].b.Instance())
		}
	}
	agree("open, local clocks an hour on", waits, after.NextProbeIn, snap.NextProbeIn)
	wantStates("open, local clocks an hour on", breaker.Open)

	// Redis's open time ends; local clocks jump again. Exactly one instance,
	// whichever its clock, gets the probe; the others agree on the wait.
	fleetWaitOpenOver(t, fleet[perSkew].b)
	advance(time.Hour)
	began := time.Now()
	permits, waits = allowAll("half-open")
	took := time.Since(began)
	var probe breaker.Permit
	var rejected []time.Duration
	for i, p := range permits {
		switch {
		case p == (breaker.Permit{}):
			rejected = append(rejected, waits[i])
		case !p.Probe():
			t.Fatalf("half-open: instance %s got a plain permit", fleet[i].b.Instance())
		case probe != (breaker.Permit{}):
			t.Fatalf("half-open: a second probe, for instance %s", fleet[i].b.Instance())
		default:
			probe = p
		}
	}
	if probe == (breaker.Permit{}) {
		t.Fatal("half-open: no instance got the probe")
	}
	// A half-open rejection is decided locally for at most a second (the
	// lease may be released early), then the store is asked again.
	agree("half-open", rejected, min(lease-took, time.Second), min(lease, time.Second))
	wantStates("half-open", breaker.HalfOpen)

	// The probe succeeds: everyone is closed and admits again.
	probe.Done(ctx, nil)
	fleetAwaitAll(t, fleet, breaker.Closed)
	permits, _ = allowAll("closed again")
	for i, p := range permits {
		if p == (breaker.Permit{}) || p.Probe() {
			t.Fatalf("closed again: instance %s: got %v, want a plain permit", fleet[i].b.Instance(), p)
		}
		p.Done(ctx, nil)
	}
	wantStates("closed again", breaker.Closed)
	if snap := fleetSnapshot(t, fleet[0].b); snap.Counts.Successes != uint64(len(fleet)) {
		t.Errorf("closed again: Successes %d, want %d", snap.Counts.Successes, len(fleet))
	}
}

// TestFleetRedisOutage: when Redis dies, every breaker keeps deciding, as
// its Fallback says, and says so once; the store tries Redis once per
// cooldown, not once per call. When Redis comes back empty, the breakers
// recover, say how many outcomes they could not report, carry on with a
// larger generation, and count outcomes again.
func TestFleetRedisOutage(t *testing.T) {
	const (
		threshold = 5
		rounds    = 20
		cooldown  = time.Second
	)
	srv := redistest.Start(t)
	ctx := context.Background()
	o := store.Options{Prefix: fleetPrefix(t), Timeout: 200 * time.Millisecond, Cooldown: cooldown}
	cases := []struct {
		fallback breaker.Fallback
		admitted int // of the rounds of Allow and a failure after Redis died
	}{
		// The first call after Redis died is admitted by the closed view;
		// its report finds Redis gone. From then on the fallback decides.
		{breaker.FallbackLocal, threshold},
		{breaker.FallbackOpen, rounds},
		{breaker.FallbackClosed, 1},
	}
	fleet := make([]*fleetInstance, len(cases))
	for i, tc := range cases {
		s := breaker.Settings{ConsecutiveFailures: threshold, Fallback: tc.fallback, Instance: "fallback-" + tc.fallback.String()}
		fleet[i] = fleetStart(t, srv, "inventory", s, o)
		for j := 0; j < 3; j++ {
			p, err := fleet[i].b.Allow(ctx)
			if err != nil {
				t.Fatalf("%v: Allow before the outage: %v", tc.fallback, err)
			}
			p.Done(ctx, nil)
		}
	}
	before := fleetSnapshot(t, fleet[0].b)
	if before.Counts.Successes != 3*uint64(len(cases)) {
		t.Fatalf("before the outage: Successes %d, want %d", before.Counts.Successes, 3*len(cases))
	}

	srv.Stop()
	for i, tc := range cases {
		in := fleet[i]
		// Round trips, not commands: a report and a read due at once (a
		// periodic refresh) share one.
		attempts := in.hook.trips.Load()
		began := time.Now()
		admitted := 0
		for r := 0; r < rounds; r++ {
			p, err := in.b.Allow(ctx)
			if err != nil {
				if oe := fleetOpenError(t, tc.fallback.String(), err); !oe.Local {
					t.Errorf("%v: round %d: rejection not marked Local: %v", tc.fallback, r, err)
				}
				continue
			}
			admitted++
			p.Done(ctx, errFleetDown)
		}
		elapsed := time.Since(began)
		attempts = in.hook.trips.Load() - attempts
		// The re-read that follows each instance's subscription may run
		// after Redis died and put it on the fallback before its first call:
		// then failing closed admits nothing at all.
		if tc.fallback == breaker.FallbackClosed && admitted == 0 {
			cases[i].admitted, tc.admitted = 0, 0
		}
		// The first failure reaches the local breaker when its report is
		// drained, which may be after Redis's loss is known: it then counts
		// once more, and the local breaker trips one call later.
		if tc.fallback == breaker.FallbackLocal && admitted == tc.admitted+1 {
			cases[i].admitted, tc.admitted = admitted, admitted
		}
		if admitted != tc.admitted {
			t.Errorf("%v: %d of %d calls admitted while Redis is down, want %d", tc.fallback, admitted, rounds, tc.admitted)
		}
		if bound := 1 + int64(elapsed/cooldown); attempts > bound {
			t.Errorf("%v: %d Redis attempts in %v for %d calls, want at most %d (one per cooldown of %v)",
				tc.fallback, attempts, elapsed, rounds, bound, cooldown)
		}
		// The local breaker's trip is an event too, marked as the local
		// breaker's.
		want := 1
		if tc.fallback == breaker.FallbackLocal {
			want = 2
		}
		evs := fleetDrain(in)
		for deadline := time.Now().Add(fleetWait); len(evs) < want && time.Now().Before(deadline); {
			select {
			case e := <-in.events:
				evs = append(evs, e)
			case <-time.After(time.Until(deadline)):
			}
		}
		if len(evs) != want || evs[0].Kind != breaker.StoreUnavailable {
			t.Fatalf("%v: events while Redis is down: got %+v, want one store-unavailable (and the local trip)", tc.fallback, evs)
		}
		if e := evs[0]; !errors.Is(e.Err, store.ErrUnavailable) || e.Fallback != tc.fallback || e.Name != "inventory" {
			t.Errorf("%v: store-unavailable event: Err %v, Fallback %v, Name %q; want ErrUnavailable, %v, inventory",
				tc.fallback, e.Err, e.Fallback, e.Name, tc.fallback)
		}
		if want == 2 {
			if e := evs[1]; e.Kind != breaker.StateChanged || e.Decider != breaker.DecideLocal || e.From != breaker.Closed || e.To != breaker.Open {
				t.Errorf("%v: second event %+v, want the local breaker's closed->open", tc.fallback, e)
			}
		}
	}

	srv.Restart()
	for i, tc := range cases {
		in := fleet[i]
		e := fleetRecover(t, in)
		if e.Unreported != uint64(tc.admitted) || e.Fallback != tc.fallback {
			t.Errorf("%v: store-recovered event: Unreported %d, Fallback %v; want %d, %v",
				tc.fallback, e.Unreported, e.Fallback, tc.admitted, tc.fallback)
		}
	}
	// Redis restarted empty: the outcomes counted before are gone, and
	// every outcome the instances held while it was away is delivered once,
	// to the breaker the store starts anew (counted as current: the store
	// forgot their generation, which does not make them stale).
	held := 0
	for _, tc := range cases {
		held += tc.admitted
	}
	after := fleetSnapshot(t, fleet[0].b)
	if after.Generation <= before.Generation || after.Counts.TotalFailures != uint64(held) || after.Counts.TotalSuccesses != 0 {
		t.Errorf("after the restart: generation %d, TotalFailures %d, TotalSuccesses %d; want a generation > %d, %d, 0",
			after.Generation, after.Counts.TotalFailures, after.Counts.TotalSuccesses, before.Generation, held)
	}
	for i := range fleet {
		fleetDrain(fleet[i]) // transitions of the new breaker
	}
	for i, in := range fleet {
		_ = in.b.Close()
		for _, e := range fleetDrain(in) {
			t.Errorf("%v: unexpected event after recovery: %+v", cases[i].fallback, e)
		}
	}
}

// fleetRecover calls Allow every 20ms (dropping the permits) until in's
// breaker reports that its store answers again, and returns that event. It
// fails the test on a second store-unavailable event.
func fleetRecover(t *testing.T, in *fleetInstance) breaker.Event {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	timeout := time.NewTimer(fleetWait)
	defer timeout.Stop()
	for {
		select {
		case e := <-in.events:
			switch e.Kind {
			case breaker.StoreRecovered:
				return e
			case breaker.StoreUnavailable:
				t.Errorf("%s: a second store-unavailable event in one outage: %+v", in.b.Instance(), e)
			}
		case <-tick.C:
			_, _ = in.b.Allow(context.Background())
		case <-timeout.C:
			t.Fatalf("%s: no store-recovered event within %v", in.b.Instance(), fleetWait)
		}
	}
}

// TestFleetHungRedis: a Redis that accepts connections but answers nothing
// costs a caller at most about Options.Timeout, once per cooldown; every
// other call is decided at once by the fallback. This holds for a client
// with go-redis's default options, which ignore a context's deadline on the
// socket, as for one with ContextTimeoutEnabled.
func TestFleetHungRedis(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client func(*redis.Options)
	}{
		{"default client", func(*redis.Options) {}},
		{"ContextTimeoutEnabled", func(o *redis.Options) { o.ContextTimeoutEnabled = true }},
	} {
		tc := tc
		t.Run(tc.name, func(t *testing.T) { fleetHung(t, tc.client) })
	}
}

func fleetHung(t *testing.T, client func(*redis.Options)) {
	const (
		timeout  = 200 * time.Millisecond
		cooldown = 500 * time.Millisecond
		// slack covers scheduling under -race on a busy machine; it is far
		// below go-redis's default ReadTimeout (3s).
		slack = 700 * time.Millisecond
	)
	srv := redistest.Start(t)
	ctx := context.Background()
	o := store.Options{Prefix: fleetPrefix(t), Timeout: timeout, Cooldown: cooldown}
	in := fleetStart(t, srv, "billing", breaker.Settings{Fallback: breaker.FallbackOpen, Instance: "hung"}, o, client)
	p, err := in.b.Allow(ctx)
	if err != nil {
		t.Fatalf("Allow: %v", err)
	}
	p.Done(ctx, nil)

	srv.Freeze()
	t.Cleanup(srv.Thaw)
	attempts := in.hook.attempts("")
	began := time.Now()
	var slowest time.Duration
	calls := 0
	for time.Since(began) < 3*cooldown {
		t0 := time.Now()
		p, err := in.b.Allow(ctx)
		if err != nil {
			t.Fatalf("FallbackOpen: Allow while Redis hangs: %v", err)
		}
		p.Done(ctx, errFleetDown)
		slowest = max(slowest, time.Since(t0))
		calls++
		<-time.After(10 * time.Millisecond)
	}
	elapsed := time.Since(began)
	fleetAwait(t, in, "store-unavailable", func(e breaker.Event) bool { return e.Kind == breaker.StoreUnavailable })
	// Abandoned attempts end when Redis answers; count them after Thaw.
	srv.Thaw()
	fleetRecover(t, in)
	// The recovering call, and possibly the background re-read that retries
	// each second, reach Redis once it answers.
	attempts = in.hook.attempts("") - attempts - 2
	if slowest > timeout+slack {
		t.Errorf("slowest of %d calls while Redis hangs took %v, want at most Timeout %v (+%v slack)", calls, slowest, timeout, slack)
	}
	if bound := 1 + int(elapsed/cooldown); attempts < 0 || attempts > bound {
		t.Errorf("%d Redis attempts in %v while Redis hangs, want at most %d (one per cooldown of %v)", attempts, elapsed, bound, cooldown)
	}
	// Every failure reported while Redis hung is delivered once it answers.
	if snap := fleetSnapshot(t, in.b); snap.Counts.TotalFailures < uint64(calls) {
		t.Errorf("after thaw: TotalFailures %d, want at least the %d made while Redis hung", snap.Counts.TotalFailures, calls)
	}
}

// fleetGate is a dialer the test can cut: cut closes every connection made
// through it and holds new dials until open.
type fleetGate struct {
	mu     sync.Mutex
	opened chan struct{} // closed while the gate is open
	conns  []net.Conn
}

func newFleetGate() *fleetGate {
	g := &fleetGate{opened: make(chan struct{})}
	close(g.opened)
	return g
}

func (g *fleetGate) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	g.mu.Lock()
	opened := g.opened
	g.mu.Unlock()
	select {
	case <-opened:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err == nil {
		g.mu.Lock()
		g.conns = append(g.conns, c)
		g.mu.Unlock()
	}
	return c, err
}

func (g *fleetGate) cut() {
	g.mu.Lock()
	g.opened = make(chan struct{})
	conns := g.conns
	g.conns = nil
	g.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

func (g *fleetGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.opened:
	default:
		close(g.opened)
	}
}

// fleetPoll calls cond every 10ms until it is true, or fails the test after
// fleetWait. It waits for what the test cannot be told about: Redis's view
// of its subscribers, a hook's count.
func fleetPoll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(fleetWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, fleetWait)
		}
		<-time.After(10 * time.Millisecond)
	}
}

// TestFleetPubSub: announcements are hints, never state. Forged or garbled
// messages change nothing and make no event (a well-formed one costs one
// re-read); after a Redis restart the subscription comes back and another
// instance's transition is heard; an announcement missed while cut off is
// made up for by the re-read after resubscribing.
func TestFleetPubSub(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	const name = "quotes"
	o := store.Options{Prefix: fleetPrefix(t), Timeout: 2 * time.Second}
	s := breaker.Settings{ConsecutiveFailures: 3, OpenDuration: time.Minute}
	sa, sb := s, s
	sa.Instance, sb.Instance = "a", "b"
	a := fleetStart(t, srv, name, sa, o)
	gate := newFleetGate()
	b := fleetStart(t, srv, name, sb, o, func(opt *redis.Options) { opt.Dialer = gate.dial })
	raw := srv.Client(t)
	channel := a.st.Channel()
	subscribers := func(want int64) func() bool {
		return func() bool {
			n, err := raw.PubSubNumSub(ctx, channel).Result()
			return err == nil && n[channel] == want
		}
	}
	reads := func(want int) func() bool {
		return func() bool { return b.hook.finished("read") == want }
	}

	// B re-reads once when its subscription starts.
	fleetPoll(t, "both instances subscribed", subscribers(2))
	fleetPoll(t, "B's first re-read", reads(1))
	gen := fleetSnapshot(t, a.b).Generation

	for _, payload := range []string{"", "garbage", "12", " " + name, "-5 " + name, "0 " + name,
		"abc " + name, "1.5 " + name, fmt.Sprintf("%d other", gen+5), "\x00\xff"} {
		if err := raw.Publish(ctx, channel, payload).Err(); err != nil {
			t.Fatalf("publish %q: %v", payload, err)
		}
	}
	if err := raw.Publish(ctx, channel, "999999999999999 "+name).Err(); err != nil {
		t.Fatalf("publish forged: %v", err)
	}
	// Only the well-formed forgery for B's breaker is worth a re-read.
	fleetPoll(t, "B's re-read after the forged message", reads(2))
	if got := b.b.State(); got != breaker.Closed {
		t.Errorf("after forged messages: B's state %v, want closed", got)
	}
	if snap := fleetSnapshot(t, a.b); snap.State != breaker.Closed || snap.Generation != gen {
		t.Errorf("after forged messages: state %v gen %d, want closed gen %d", snap.State, snap.Generation, gen)
	}

	// A real transition, by A: B hears it once, and nothing before it.
	fleetTrip(t, a.b, 3)
	e := fleetAwait(t, b, "any", func(breaker.Event) bool { return true })
	if e.Kind != breaker.StateChanged || e.From != breaker.Closed || e.To != breaker.Open || e.Generation != gen+1 || e.Instance != "a" || e.Local {
		t.Errorf("B's first event: got %+v, want closed->open gen %d by a, not local", e, gen+1)
	}
	fleetPoll(t, "B's re-read after A's transition", reads(3))

	// Redis restarts empty: both subscriptions come back (each re-reads),
	// and B hears A's next transition.
	srv.Restart()
	fleetPoll(t, "both instances subscribed again", subscribers(2))
	fresh := fleetSnapshot(t, a.b)
	if fresh.State != breaker.Closed || fresh.Generation <= gen+1 {
		t.Fatalf("after the restart: state %v gen %d, want closed and gen > %d", fresh.State, fresh.Generation, gen+1)
	}
	fleetTrip(t, a.b, 3)
	e = fleetAwait(t, b, "state-changed to open after the restart", fleetChangedTo(breaker.Open))
	if e.Generation != fresh.Generation+1 || e.From != breaker.Closed {
		t.Errorf("after the restart: B heard %v->%v gen %d, want closed->open gen %d", e.From, e.To, e.Generation, fresh.Generation+1)
	}

	// B is cut off; A closes the breaker; B cannot know. When B's
	// connection comes back, its re-read after resubscribing tells it.
	gate.cut()
	fleetPoll(t, "B unsubscribed", subscribers(1))
	if err := a.b.ForceClose(ctx); err != nil {
		t.Fatalf("ForceClose: %v", err)
	}
	if got := b.b.State(); got != breaker.Open {
		t.Fatalf("B cut off: state %v, want open (it cannot have heard)", got)
	}
	gate.open()
	e = fleetAwait(t, b, "state-changed to closed after resubscribing", fleetChangedTo(breaker.Closed))
	if e.From != breaker.Open || e.Reason != "forced_close" || e.Generation != fresh.Generation+2 || e.Instance != "a" {
		t.Errorf("after resubscribing: B heard %+v, want open->closed gen %d (forced_close by a)", e, fresh.Generation+2)
	}
	_ = b.b.Close()
	for _, e := range fleetDrain(b) {
		if e.Kind == breaker.StateChanged {
			t.Errorf("B: unexpected event %+v", e)
		}
	}
}

// fleetDump returns DUMP of each key ("" for a missing one).
func fleetDump(t *testing.T, c redis.UniversalClient, keys []string) []string {
	t.Helper()
	out := make([]string, len(keys))
	for i, k := range keys {
		v, err := c.Dump(context.Background(), k).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatalf("DUMP %s: %v", k, err)
		}
		out[i] = v
	}
	return out
}

// TestFleetForeignData: keys that hold another program's data (or damaged
// data) make Snapshot fail with ErrCorrupt, leave the data as it is, and
// let Allow fall back instead of panicking; Reset repairs them.
func TestFleetForeignData(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	raw := srv.Client(t)
	const name = "catalog"
	const (
		state = iota
		window
		troubled
		leases
	)
	cases := []struct {
		name  string
		write func(keys []string) error
		cold  bool // a key only Snapshot and the operator's commands read
	}{
		{"string at the state key", func(k []string) error { return raw.Set(ctx, k[state], "hello", 0).Err() }, false},
		{"zset at the state key", func(k []string) error {
			_, err := raw.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Del(ctx, k[state])
				p.ZAdd(ctx, k[state], redis.Z{Score: 1, Member: "a"})
				return nil
			})
			return err
		}, false},
		{"hash with an unknown state", func(k []string) error { return raw.HSet(ctx, k[state], "st", "exploded").Err() }, false},
		{"hash lacking fields", func(k []string) error {
			_, err := raw.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Del(ctx, k[state])
				p.HSet(ctx, k[state], "st", "closed")
				return nil
			})
			return err
		}, false},
		{"generation not a number", func(k []string) error { return raw.HSet(ctx, k[state], "gen", "soon").Err() }, false},
		{"string at the window key", func(k []string) error { return raw.Set(ctx, k[window], "x", 0).Err() }, false},
		{"window bucket not a number", func(k []string) error { return raw.HSet(ctx, k[window], "t0", "many").Err() }, false},
		{"hash at the troubled-instances key", func(k []string) error { return raw.HSet(ctx, k[troubled], "a", "b").Err() }, true},
		{"list at the lease key", func(k []string) error { return raw.RPush(ctx, k[leases], "x").Err() }, true},
	}
	for _, tc := range cases {
		tc := tc
		t.Run(tc.name, func(t *testing.T) {
			o := store.Options{Prefix: fleetPrefix(t), Timeout: 2 * time.Second}
			maker := fleetStart(t, srv, name, breaker.Settings{Instance: "maker"}, o)
			created := fleetSnapshot(t, maker.b)
			keys := maker.st.Keys(name)
			if err := tc.write(keys); err != nil {
				t.Fatalf("writing foreign data: %v", err)
			}
			dump := fleetDump(t, raw, keys)

			// A rate policy puts the window in use: a script reads a key's
			// contents only when its policies need them.
			in := fleetStart(t, srv, name, breaker.Settings{Instance: "victim", FailureRate: 0.5}, o)
			_, err := in.b.Snapshot(ctx)
			if !errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("Snapshot: got %v, want an error matching store.ErrCorrupt only", err)
			}
			if err := in.b.ForceOpen(ctx); !errors.Is(err, store.ErrCorrupt) {
				t.Errorf("ForceOpen on foreign data: got %v, want an error matching store.ErrCorrupt", err)
			}
			if tc.cold {
				// The hot path's scripts do not read this key (it is used
				// with a quorum, or while half-open): calls go on.
				if err := in.b.Reset(ctx); err != nil {
					t.Fatalf("Reset: %v", err)
				}
				if typ := raw.Type(ctx, keys[state]).Val(); typ != "hash" {
					t.Errorf("after Reset: state key is a %s, want a hash", typ)
				}
				return
			}
			p, err := in.b.Allow(ctx)
			if err != nil {
				t.Fatalf("Allow on foreign data: got %v, want a permit from the local fallback", err)
			}
			p.Done(ctx, errFleetDown)
			e := fleetAwait(t, in, "store-unavailable", func(e breaker.Event) bool { return e.Kind == breaker.StoreUnavailable })
			if !errors.Is(e.Err, store.ErrCorrupt) {
				t.Errorf("store-unavailable event: Err %v, want one matching store.ErrCorrupt", e.Err)
			}
			if got := fleetDump(t, raw, keys); fmt.Sprint(got) != fmt.Sprint(dump) {
				t.Errorf("the failed scripts changed the foreign data")
			}

			if err := in.b.Reset(ctx); err != nil {
				t.Fatalf("Reset: %v", err)
			}
			e = fleetAwait(t, in, "store-recovered", func(e breaker.Event) bool { return e.Kind == breaker.StoreRecovered })
			if e.Unreported != 1 {
				t.Errorf("store-recovered after Reset: Unreported %d, want 1", e.Unreported)
			}
			snap := fleetSnapshot(t, in.b)
			if snap.State != breaker.Closed || snap.Reason != "reset" || snap.Generation <= created.Generation {
				t.Errorf("after Reset: state %v reason %q gen %d, want closed, reset, gen > %d",
					snap.State, snap.Reason, snap.Generation, created.Generation)
			}
			if typ := raw.Type(ctx, keys[state]).Val(); typ != "hash" {
				t.Errorf("after Reset: state key is a %s, want a hash", typ)
			}
			p, err = in.b.Allow(ctx)
			if err != nil {
				t.Fatalf("Allow after Reset: %v", err)
			}
			p.Done(ctx, errFleetDown)
			// The failure that waited while the keys were foreign is delivered
			// after the reset, once. It counts with the new one when it was
			// admitted under no known generation; when the victim had read the
			// state first (its read after subscribing is a plain HMGET of the
			// state hash, which a foreign window does not stop), it was
			// admitted under the generation the reset ended: stale.
			if err := in.b.Flush(ctx); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			snap = fleetSnapshot(t, maker.b)
			c := snap.Counts
			if c.TotalFailures != 2 || c.Failures+c.TotalStale != 2 || c.TotalStale > 1 || snap.Generation != fleetSnapshot(t, in.b).Generation {
				t.Errorf("after Reset, one failure: Failures %d, TotalFailures %d, TotalStale %d; want 2 delivered, the one that waited counted or stale, seen alike by every instance",
					c.Failures, c.TotalFailures, c.TotalStale)
			}
		})
	}
}

// TestFleetRedisCluster: on a Redis Cluster of three masters, breakers whose
// keys fall on different masters work; each breaker's four keys share one
// slot; a transition made by one instance is heard by another through
// pub/sub.
func TestFleetRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	ctx := context.Background()
	admin := cl.Client(t)
	o := store.Options{Prefix: fleetPrefix(t), Timeout: 2 * time.Second}
	keysOf, err := store.New(admin, o)
	if err != nil {
		t.Fatal(err)
	}
	nodes := cl.Nodes()
	direct := make([]*redis.Client, len(nodes))
	for i, n := range nodes {
		direct[i] = n.Client(t)
	}
	// Each node counts only its own subscribers.
	subscribers := func() int64 {
		var sum int64
		for _, c := range direct {
			n, err := c.PubSubNumSub(ctx, keysOf.Channel()).Result()
			if err != nil {
				t.Fatalf("PUBSUB NUMSUB: %v", err)
			}
			sum += n[keysOf.Channel()]
		}
		return sum
	}
	names := make([]string, len(nodes))
	for k, found := 0, 0; found < len(nodes); k++ {
		if k == 1000 {
			t.Fatalf("no breaker names for every master after %d tries: %q", k, names)
		}
		name := fmt.Sprintf("svc-%d", k)
		slot, err := admin.ClusterKeySlot(ctx, keysOf.Keys(name)[0]).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT: %v", err)
		}
		if i := int(slot) * len(nodes) / 16384; names[i] == "" {
			names[i] = name
			found++
		}
	}

	for i, name := range names {
		keys := keysOf.Keys(name)
		slot := admin.ClusterKeySlot(ctx, keys[0]).Val()
		for _, k := range keys[1:] {
			if got := admin.ClusterKeySlot(ctx, k).Val(); got != slot {
				t.Errorf("%s: key %s in slot %d, want %d (the state key's)", name, k, got, slot)
			}
		}
		s := breaker.Settings{ConsecutiveFailures: 2, OpenDuration: time.Minute}
		sa, sb := s, s
		sa.Instance, sb.Instance = name+"-a", name+"-b"
		a := fleetAttach(t, cl.Client(t), name, sa, o)
		b := fleetAttach(t, cl.Client(t), name, sb, o)
		before := fleetSnapshot(t, b.b)
		fleetPoll(t, name+": both instances subscribed", func() bool { return subscribers() == int64(2*(i+1)) })
		fleetTrip(t, a.b, 2)
		e := fleetAwait(t, b, "state-changed to open", fleetChangedTo(breaker.Open))
		if e.Generation != before.Generation+1 || e.Instance != sa.Instance || e.From != breaker.Closed {
			t.Errorf("%s: B heard %v->%v gen %d by %s, want closed->open gen %d by %s",
				name, e.From, e.To, e.Generation, e.Instance, before.Generation+1, sa.Instance)
		}
		// The state lives on the master that owns the slot.
		if n, err := direct[i].Exists(ctx, keys[0]).Result(); err != nil || n != 1 {
			t.Errorf("%s: EXISTS %s on master %d: got %d, %v; want 1", name, keys[0], i, n, err)
		}
	}
}
