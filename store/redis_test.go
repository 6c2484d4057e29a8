package store_test

// Every script against a real redis-server (internal/redistest), through
// the store's methods: replies parsed field by field, transitions and their
// announcements, idle expiry, errors, outages.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/breaker/backend"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/lua"
	"github.com/breakwater-go/breakwater/store"
)

// fleetWait bounds every wait for something that should happen within
// milliseconds; it is generous so that a slow machine under -race passes.
const fleetWait = 10 * time.Second

// fleetPolicy is a breaker's policy (the store gets it with the defaults
// applied): trip after 3 consecutive failures, one probe. The slow-call
// policy (all calls slow) keeps the window in use without tripping these
// tests.
func fleetPolicy(open, lease time.Duration) *backend.Policy {
	return &backend.Policy{ConsecutiveFailures: 3, SlowCallRate: 1, MinimumCalls: 20, Window: time.Minute,
		WindowBuckets: 10, Quorum: 1, OpenDuration: open, MaxOpenDuration: open,
		MaxProbes: 1, ProbeSuccesses: 1, ProbeLease: lease}
}

// fleetHook counts the script calls a client starts (one EVALSHA each).
type fleetHook struct{ evals atomic.Int64 }

func (h *fleetHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *fleetHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.EqualFold(cmd.Name(), "evalsha") {
			h.evals.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *fleetHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// fleetEnv is one store on a real server, with a raw client beside it.
type fleetEnv struct {
	t    *testing.T
	srv  *redistest.Server
	raw  *redis.Client
	st   *store.Store
	hook *fleetHook
	s    *backend.Policy
}

func newFleetEnv(t *testing.T, o store.Options, s *backend.Policy, copts ...func(*redis.Options)) *fleetEnv {
	t.Helper()
	srv := redistest.Start(t)
	e := &fleetEnv{t: t, srv: srv, raw: srv.Client(t), hook: &fleetHook{}, s: s}
	c := srv.Client(t, copts...)
	c.AddHook(e.hook)
	if o.Prefix == "" {
		o.Prefix = "fleet-" + strings.ReplaceAll(t.Name(), "/", "-")
	}
	st, err := store.New(c, o)
	if err != nil {
		t.Fatalf("store.New: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	e.st = st
	return e
}

func (e *fleetEnv) req(name, instance string) backend.Request {
	return backend.Request{Name: name, Instance: instance, Policy: e.s, Full: true}
}

// redisNow returns Redis's clock in ms.
func (e *fleetEnv) redisNow() int64 {
	e.t.Helper()
	now, err := e.raw.Time(context.Background()).Result()
	if err != nil {
		e.t.Fatalf("TIME: %v", err)
	}
	return now.UnixMilli()
}

// must fails the test when a store call failed.
func (e *fleetEnv) must(op string, r backend.Reply, err error) backend.Reply {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("%s: %v", op, err)
	}
	return r
}

func (e *fleetEnv) read(name string) backend.Reply {
	e.t.Helper()
	r, err := e.st.Read(context.Background(), e.req(name, "reader"))
	return e.must("Read", r, err)
}

func (e *fleetEnv) acquire(name, instance, lease string) backend.Reply {
	e.t.Helper()
	q := e.req(name, instance)
	q.Lease = lease
	r, err := e.st.Acquire(context.Background(), q)
	return e.must("Acquire", r, err)
}

// record reports outcomes written as in record.lua: S success, F failure,
// s slow success, f slow failure, I ignored.
func (e *fleetEnv) record(name, instance string, gen int64, lease, outcomes string) backend.Reply {
	e.t.Helper()
	q := e.req(name, instance)
	q.Generation, q.Lease = gen, lease
	for _, c := range outcomes {
		if c != 'I' {
			q.Batch.Add(c == 'F' || c == 'f', c == 's' || c == 'f')
		}
	}
	r, err := e.st.Record(context.Background(), q)
	return e.must("Record", r, err)
}

func (e *fleetEnv) force(name, instance string, c backend.Command) backend.Reply {
	e.t.Helper()
	q := e.req(name, instance)
	q.Command = c
	r, err := e.st.Force(context.Background(), q)
	return e.must("Force", r, err)
}

// waitOpenOver reads until Redis's clock says the open time is over.
func (e *fleetEnv) waitOpenOver(name string) {
	e.t.Helper()
	deadline := time.Now().Add(fleetWait)
	for {
		r := e.read(name)
		if r.State != backend.Open {
			e.t.Fatalf("waiting for the open time to end: state %v", r.State)
		}
		if r.Wait <= 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("open time not over after %v", fleetWait)
		}
		<-time.After(r.Wait)
	}
}

// subscribe returns a function that publishes a sentinel and returns
// the first line ("<generation> <name>") of every message published on the
// store's channel since subscribe.
func (e *fleetEnv) subscribe() func() []string {
	e.t.Helper()
	ctx := context.Background()
	ps := e.raw.Subscribe(ctx, e.st.Channel())
	e.t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(ctx); err != nil {
		e.t.Fatalf("subscribe: %v", err)
	}
	ch := ps.Channel()
	pub := e.srv.Client(e.t)
	return func() []string {
		e.t.Helper()
		const sentinel = "fleet-sentinel"
		if err := pub.Publish(ctx, e.st.Channel(), sentinel).Err(); err != nil {
			e.t.Fatalf("publish: %v", err)
		}
		var got []string
		timeout := time.After(fleetWait)
		for {
			select {
			case m := <-ch:
				if m.Payload == sentinel {
					return got
				}
				if strings.HasPrefix(m.Payload, "settle ") {
					continue // a call to report at once, not a transition
				}
				head, _, _ := strings.Cut(m.Payload, "\n") // "<generation> <name>"
				got = append(got, head)
			case <-timeout:
				e.t.Fatalf("sentinel not received within %v; got %q", fleetWait, got)
			}
		}
	}
}

// fleetCheck compares named values and reports every difference.
func fleetCheck(t *testing.T, step string, pairs ...interface{}) {
	t.Helper()
	for i := 0; i+2 < len(pairs); i += 3 {
		if got, want := pairs[i+1], pairs[i+2]; got != want {
			t.Errorf("%s: %s: got %v, want %v", step, pairs[i], got, want)
		}
	}
}

func fleetWithin(t *testing.T, step, what string, got, lo, hi time.Duration) {
	t.Helper()
	if got < lo || got > hi {
		t.Errorf("%s: %s: got %v, want between %v and %v", step, what, got, lo, hi)
	}
}

// TestRedisScriptLifecycle drives one breaker through every state with
// each script and checks every field of every reply, and the announcements.
func TestRedisScriptLifecycle(t *testing.T) {
	const (
		open  = 300 * time.Millisecond
		lease = 5 * time.Second
		name  = "orders"
	)
	e := newFleetEnv(t, store.Options{}, fleetPolicy(open, lease))
	published := e.subscribe()

	t0 := e.redisNow()
	r := e.read(name)
	t1 := e.redisNow()
	if r.Generation < t0 || r.Generation > t1 {
		t.Errorf("new breaker: generation %d, want Redis's clock in ms, between %d and %d", r.Generation, t0, t1)
	}
	gen := r.Generation
	fleetCheck(t, "Read of a new breaker",
		"Verdict", r.Verdict, backend.VerdictOK, "State", r.State, backend.Closed,
		"From", r.From, backend.Closed, "Reason", r.Reason, "created", "By", r.By, "reader",
		"Wait", r.Wait, time.Duration(0), "Lease", r.Lease, "", "Changed", r.Changed, false,
		"Counts", r.Counts, backend.Counts{})
	fleetWithin(t, "Read of a new breaker", "InState", r.InState, 0, time.Second)
	if again := e.read(name); again.Generation != gen || again.By != "reader" {
		t.Errorf("second Read: generation %d by %q, want %d by reader (Read changes nothing)", again.Generation, again.By, gen)
	}

	r = e.acquire(name, "i1", "L1")
	fleetCheck(t, "Acquire, closed", "Verdict", r.Verdict, backend.VerdictAllow, "State", r.State, backend.Closed,
		"Generation", r.Generation, gen, "Lease", r.Lease, "", "Changed", r.Changed, false)

	r = e.record(name, "i1", gen, "", "S")
	fleetCheck(t, "Record S", "Verdict", r.Verdict, backend.VerdictCounted, "Successes", r.Counts.Successes, uint64(1),
		"TotalSuccesses", r.Counts.TotalSuccesses, uint64(1), "WindowCalls", r.Counts.WindowCalls, uint64(1))

	r = e.record(name, "i2", gen, "", "Ff")
	c := r.Counts
	fleetCheck(t, "Record F f",
		"Verdict", r.Verdict, backend.VerdictCounted, "State", r.State, backend.Closed,
		"Failures", c.Failures, uint64(2), "ConsecutiveFailures", c.ConsecutiveFailures, uint64(2),
		"WindowCalls", c.WindowCalls, uint64(3), "WindowFailures", c.WindowFailures, uint64(2),
		"WindowSlowCalls", c.WindowSlowCalls, uint64(1), "TotalSlowCalls", c.TotalSlowCalls, uint64(1),
		"TroubledInstances", c.TroubledInstances, uint64(0)) // tracked only with a quorum

	r = e.record(name, "i3", gen, "", "F")
	c = r.Counts
	fleetCheck(t, "Record F: trips",
		"Verdict", r.Verdict, backend.VerdictCounted, "Changed", r.Changed, true,
		"State", r.State, backend.Open, "From", r.From, backend.Closed,
		"Reason", r.Reason, "consecutive_failures", "By", r.By, "i3", "Generation", r.Generation, gen+1,
		"PreviousFailures", c.PreviousFailures, uint64(3), "Trips", c.Trips, uint64(1),
		"Failures", c.Failures, uint64(0), "ConsecutiveFailures", c.ConsecutiveFailures, uint64(0),
		"WindowCalls", c.WindowCalls, uint64(0), "TroubledInstances", c.TroubledInstances, uint64(0),
		"TotalFailures", c.TotalFailures, uint64(3), "TotalSuccesses", c.TotalSuccesses, uint64(1))
	fleetWithin(t, "Record F: trips", "Wait", r.Wait, open-50*time.Millisecond, open)
	fleetWithin(t, "Record F: trips", "InState", r.InState, 0, 0)

	r = e.record(name, "i1", gen, "", "S")
	fleetCheck(t, "Record of the old generation",
		"Verdict", r.Verdict, backend.VerdictStale, "Changed", r.Changed, false, "State", r.State, backend.Open,
		"Generation", r.Generation, gen+1, "TotalStale", r.Counts.TotalStale, uint64(1),
		"TotalSuccesses", r.Counts.TotalSuccesses, uint64(2), "Successes", r.Counts.Successes, uint64(0))

	r = e.acquire(name, "i2", "L2")
	fleetCheck(t, "Acquire, open", "Verdict", r.Verdict, backend.VerdictReject, "State", r.State, backend.Open, "Lease", r.Lease, "")
	fleetWithin(t, "Acquire, open", "Wait", r.Wait, time.Millisecond, open)

	e.waitOpenOver(name)
	r = e.acquire(name, "i1", "L3")
	fleetCheck(t, "Acquire, open time over",
		"Verdict", r.Verdict, backend.VerdictProbe, "Lease", r.Lease, "L3", "Changed", r.Changed, true,
		"State", r.State, backend.HalfOpen, "From", r.From, backend.Open, "Reason", r.Reason, "open_timeout",
		"By", r.By, "i1", "Generation", r.Generation, gen+2, "Trips", r.Counts.Trips, uint64(1))

	r = e.acquire(name, "i2", "L4")
	fleetCheck(t, "Acquire, probe place taken", "Verdict", r.Verdict, backend.VerdictReject,
		"State", r.State, backend.HalfOpen, "Lease", r.Lease, "", "Changed", r.Changed, false)
	fleetWithin(t, "Acquire, probe place taken", "Wait", r.Wait, lease-time.Second, lease)

	r = e.record(name, "i1", gen+2, "L3", "I")
	fleetCheck(t, "Record I with the lease", "Verdict", r.Verdict, backend.VerdictCounted,
		"State", r.State, backend.HalfOpen, "Changed", r.Changed, false, "ProbeSuccesses", r.Counts.ProbeSuccesses, uint64(0))
	if n := e.raw.ZCard(context.Background(), e.st.Keys(name)[3]).Val(); n != 0 {
		t.Errorf("after an ignored probe: %d live leases, want 0 (released)", n)
	}

	r = e.acquire(name, "i2", "L5")
	fleetCheck(t, "Acquire after the release", "Verdict", r.Verdict, backend.VerdictProbe, "Lease", r.Lease, "L5")
	r = e.record(name, "i2", gen+2, "L5", "F")
	fleetCheck(t, "Record F of the probe",
		"Changed", r.Changed, true, "State", r.State, backend.Open, "From", r.From, backend.HalfOpen,
		"Reason", r.Reason, "probe_failed", "Generation", r.Generation, gen+3,
		"Trips", r.Counts.Trips, uint64(2), "PreviousFailures", r.Counts.PreviousFailures, uint64(1))

	e.waitOpenOver(name)
	r = e.acquire(name, "i3", "L6")
	fleetCheck(t, "Acquire, open again over", "Verdict", r.Verdict, backend.VerdictProbe, "Generation", r.Generation, gen+4)
	r = e.record(name, "i3", gen+4, "L6", "S")
	fleetCheck(t, "Record S of the probe",
		"Changed", r.Changed, true, "State", r.State, backend.Closed, "From", r.From, backend.HalfOpen,
		"Reason", r.Reason, "probes_succeeded", "Generation", r.Generation, gen+5, "Trips", r.Counts.Trips, uint64(0),
		"TotalSuccesses", r.Counts.TotalSuccesses, uint64(3), "TotalFailures", r.Counts.TotalFailures, uint64(4))

	var want []string
	for g := gen + 1; g <= gen+5; g++ {
		want = append(want, fmt.Sprintf("%d %s", g, name))
	}
	if got := published(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("published: got %q, want %q", got, want)
	}
}

// TestRedisRecordBatch: a batch is counted whole, under its generation; a
// run of failures in it trips the breaker.
func TestRedisRecordBatch(t *testing.T) {
	e := newFleetEnv(t, store.Options{}, fleetPolicy(time.Minute, time.Minute))
	gen := e.read("batch").Generation
	r := e.record("batch", "i1", gen, "", "FFFFS")
	c := r.Counts
	fleetCheck(t, "Record FFFFS", "Verdict", r.Verdict, backend.VerdictCounted, "State", r.State, backend.Open,
		"Changed", r.Changed, true, "TotalStale", c.TotalStale, uint64(0),
		"TotalFailures", c.TotalFailures, uint64(4), "TotalSuccesses", c.TotalSuccesses, uint64(1),
		"PreviousFailures", c.PreviousFailures, uint64(4))
}

// TestRedisFastPathArguments: a request the fast script (lua/fast.lua)
// would count but for an argument the full script rejects gets the full
// script's error, whether or not the store asks for a renewal (which sends
// it to the full script), and changes nothing: a batch of successes with a
// run of failures, a window or buckets out of range.
func TestRedisFastPathArguments(t *testing.T) {
	const name = "fast"
	s := fleetPolicy(time.Minute, time.Minute)
	s.SlowCallRate = 0 // the fast path: no rate policy, no quorum
	e := newFleetEnv(t, store.Options{}, s)
	ctx := context.Background()
	gen := e.read(name).Generation
	seq := int64(0)
	success := func(b backend.Batch) (backend.Reply, error) {
		q := e.req(name, "i1")
		q.Known, q.Generation = gen, gen
		seq++
		q.Seq, q.Batch = seq, b
		return e.st.Record(ctx, q)
	}
	hash := func() map[string]string {
		h, err := e.raw.HGetAll(ctx, e.st.Keys(name)[0]).Result()
		if err != nil {
			t.Fatalf("HGETALL: %v", err)
		}
		return h
	}
	unchanged := func(step string, before map[string]string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), "BWARGS") {
			t.Errorf("%s: got %v, want a BWARGS error", step, err)
		}
		if after := hash(); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("%s: state hash\n%v\nwant it unchanged\n%v", step, after, before)
		}
	}
	bad := backend.Batch{Successes: 1, Lead: 1} // a run of failures in a batch without failures
	before := hash()
	_, err := success(bad) // the store's first report asks for a renewal: the full script
	unchanged("first report, lead 1 without failures", before, err)
	if r, err := success(backend.Batch{Successes: 1}); err != nil || !r.Short {
		t.Fatalf("a batch of one success: %+v, %v; want a short answer (the fast path)", r, err)
	}
	for _, b := range []backend.Batch{{Successes: 1, Lead: 1}, {Successes: 2, Trail: 1}, {Successes: 3, Run: 2}} {
		before = hash()
		_, err = success(b)
		unchanged(fmt.Sprintf("batch %+v", b), before, err)
	}

	// The record script itself, with the arguments the store sends for a
	// batch of one success, but one (settings the store does not check, a
	// batch backend.Batch.Add never makes).
	args := func(seq int64) []interface{} {
		return []interface{}{e.st.Channel(), name, "i2", "86400000", "3", "0", "0", "20", "60000", "10", "1", "1",
			"1", "60000", "60000", "60000", "0", "0.5", gen, gen, "", seq, "1", "0", "0", "0", "0", "0", "0", "0",
			"0", "0", "0"}
	}
	script := redis.NewScript(lua.Record())
	seq = 1
	res, err := script.Run(ctx, e.raw, e.st.Keys(name), args(seq)...).Slice()
	if err != nil || len(res) < 3 || res[0] != "counted" {
		t.Fatalf("the script with the store's arguments: %v, %v; want it counted", res, err)
	}
	for _, c := range []struct {
		arg  int // ARGV index
		val  string
		what string
	}{
		{9, "0", "window"}, {10, "0", "window buckets"}, {10, "1001", "window buckets"},
		{10, "1.5", "window buckets"}, {26, "1", "leading failures"}, {27, "1", "trailing failures"},
		{28, "1", "longest run"},
	} {
		seq++
		a := args(seq)
		a[c.arg-1] = c.val
		before = hash()
		_, err := script.Run(ctx, e.raw, e.st.Keys(name), a...).Result()
		unchanged(fmt.Sprintf("ARGV[%d] (%s) %q", c.arg, c.what, c.val), before, err)
	}
}

// TestRedisFastScript: the fast script (lua/fast.lua) counts a batch of
// successes of a closed breaker with no failure outstanding and nothing
// else; whatever it does not count it leaves untouched, and the store sends
// to the full script, which answers in full: a duplicate, a breaker with a
// failure outstanding, a generation the store has moved past, foreign data.
func TestRedisFastScript(t *testing.T) {
	const name = "fast-script"
	s := fleetPolicy(time.Minute, time.Minute)
	s.SlowCallRate = 0 // no rate policy, no quorum
	e := newFleetEnv(t, store.Options{}, s)
	ctx := context.Background()
	gen := e.read(name).Generation
	key := e.st.Keys(name)[0]
	hash := func() map[string]string {
		h, err := e.raw.HGetAll(ctx, key).Result()
		if err != nil {
			t.Fatalf("HGETALL: %v", err)
		}
		return h
	}
	script := redis.NewScript(lua.Fast())
	fast := func(step string, known, n, seq int64, want int64) {
		t.Helper()
		before := hash()
		got, err := script.Run(ctx, e.raw, []string{key}, "i1", known, n, seq).Int64()
		if err != nil || got != want {
			t.Fatalf("%s: fast script answered %v, %v; want %d", step, got, err, want)
		}
		after := hash()
		if want == 0 && fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("%s: state hash\n%v\nwant it unchanged\n%v", step, after, before)
		}
		if want == 1 && (after["q.i1"] != strconv.FormatInt(seq, 10) || after["ok"] == before["ok"]) {
			t.Errorf("%s: state hash\n%v\nwant ok, tok and q.i1 counted from\n%v", step, after, before)
		}
	}
	if h := hash(); h["fk"] != strconv.FormatInt(gen, 10) {
		t.Fatalf("a new closed breaker has fk %q, want its generation %d", h["fk"], gen)
	}
	fast("a batch of 2 successes", gen, 2, 10, 1)
	if h := hash(); h["ok"] != "2" || h["tok"] != "2" {
		t.Fatalf("after 2 successes: ok %s tok %s, want 2 and 2", h["ok"], h["tok"])
	}
	fast("the same sequence again", gen, 2, 10, 0)
	fast("an older sequence", gen, 2, 9, 0)
	fast("another generation", gen+1, 2, 11, 0)
	micro := time.Now().UnixMicro() // the sequences breakers send: 16 digits
	fast("a sequence of 16 digits", gen, 1, micro, 1)
	fast("the next one", gen, 1, micro+1, 1)
	fast("one at 2^53", gen, 1, 1<<53, 0)
	if err := e.raw.HSet(ctx, key, "q.i1", "10").Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.raw.HSet(ctx, key, "ok", "2", "tok", "2").Err(); err != nil {
		t.Fatal(err)
	}

	// The store: a duplicate gets the full script's verdict.
	rec := func(seq int64, b backend.Batch) backend.Reply {
		t.Helper()
		q := e.req(name, "i1")
		q.Known, q.Generation, q.Seq, q.Batch = gen, gen, seq, b
		r, err := e.st.Record(ctx, q)
		return e.must("Record", r, err)
	}
	if r := rec(10, backend.Batch{Successes: 2}); r.Verdict != backend.VerdictDuplicate || r.Short {
		t.Errorf("a duplicate through the store: %+v; want the full script's duplicate verdict", r)
	}
	// A failure outstanding closes the door until a success ends its run.
	var fail backend.Batch
	fail.Add(true, false)
	if r := rec(11, fail); r.Short || r.Counts.ConsecutiveFailures != 1 {
		t.Fatalf("a failure: %+v; want a full answer with 1 consecutive failure", r)
	}
	if h := hash(); h["fk"] != "" {
		t.Fatalf("with a failure outstanding fk is %q, want empty", h["fk"])
	}
	fast("a failure outstanding", gen, 1, 12, 0)
	if r := rec(12, backend.Batch{Successes: 1}); r.Short || r.Counts.ConsecutiveFailures != 0 || r.Counts.TotalSuccesses != 3 {
		t.Fatalf("the success after a failure: %+v; want a full answer that ends the run", r)
	}
	if r := rec(13, backend.Batch{Successes: 1}); !r.Short || r.Generation != gen {
		t.Fatalf("the next success: %+v; want the fast script's short answer", r)
	}
	// Foreign data: the fast script leaves it to the full one, which names it.
	for _, c := range []struct{ field, value string }{{"ok", "1e3"}, {"ok", "-1"}, {"ok", " 7"},
		{"ok", "12345678901234567890"}, {"tok", "x"}, {"q.i1", "0x10"}, {"gen", "twelve"}, {"st", "banana"}} {
		if err := e.raw.HSet(ctx, key, "ok", "2", "tok", "2", "q.i1", "19", "gen", gen, "st", "closed").Err(); err != nil {
			t.Fatal(err)
		}
		f, v := c.field, c.value
		if err := e.raw.HSet(ctx, key, f, v).Err(); err != nil {
			t.Fatal(err)
		}
		fast(fmt.Sprintf("%s %q", f, v), gen, 1, 20, 0)
		q := e.req(name, "i1")
		q.Known, q.Generation, q.Seq, q.Batch = gen, gen, 20, backend.Batch{Successes: 1}
		if _, err := e.st.Record(ctx, q); !errors.Is(err, store.ErrCorrupt) {
			t.Errorf("%s %q through the store: %v; want ErrCorrupt", f, v, err)
		}
	}
}

// TestRedisServerTime: every reply carries Redis's clock when it answered,
// the scripts' (read.lua, acquire, record, force) and the plain read's.
func TestRedisServerTime(t *testing.T) {
	e := newFleetEnv(t, store.Options{}, fleetPolicy(time.Minute, time.Minute))
	ctx := context.Background()
	plain := func() backend.Reply {
		q := e.req("clock", "i1")
		q.Full = false
		r, err := e.st.Read(ctx, q)
		return e.must("Read", r, err)
	}
	calls := []struct {
		name string
		call func() backend.Reply
	}{
		{"plain Read of a missing breaker", plain},
		{"Read", func() backend.Reply { return e.read("clock") }},
		{"plain Read", plain},
		{"Acquire", func() backend.Reply { return e.acquire("clock", "i1", "L1") }},
		{"Record", func() backend.Reply { return e.record("clock", "i1", 0, "", "S") }},
		{"Force", func() backend.Reply { return e.force("clock", "i1", backend.CommandClose) }},
	}
	for _, c := range calls {
		t0 := e.redisNow()
		r := c.call()
		t1 := e.redisNow()
		if got := r.ServerTime.UnixMilli(); got < t0 || got > t1 {
			t.Errorf("%s: ServerTime %d, want Redis's clock in ms, between %d and %d", c.name, got, t0, t1)
		}
	}
}

// TestRedisConcurrentRecords: outcomes recorded at once from many
// goroutines are all counted, none lost.
func TestRedisConcurrentRecords(t *testing.T) {
	const goroutines, each = 20, 50
	s := fleetPolicy(time.Minute, time.Minute)
	s.ConsecutiveFailures = 0 // off, never trip: every failure counts in one generation
	s.Quorum = goroutines + 1 // track the troubled instances
	e := newFleetEnv(t, store.Options{}, s)
	gen := e.read("atomic").Generation
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		g := g
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := e.req("atomic", fmt.Sprintf("i%d", g))
			q.Generation = gen
			q.Batch.Add(true, false)
			for i := 0; i < each; i++ {
				if _, err := e.st.Record(context.Background(), q); err != nil {
					t.Errorf("Record: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	c := e.read("atomic").Counts
	fleetCheck(t, "after concurrent records", "Failures", c.Failures, uint64(goroutines*each),
		"WindowFailures", c.WindowFailures, uint64(goroutines*each), "TroubledInstances", c.TroubledInstances, uint64(goroutines))
}

// TestRedisForce runs each operator command against the state it finds.
func TestRedisForce(t *testing.T) {
	e := newFleetEnv(t, store.Options{}, fleetPolicy(time.Minute, time.Minute))
	published := e.subscribe()
	const name = "admin"
	gen := e.read(name).Generation
	e.record(name, "i1", gen, "", "S")

	steps := []struct {
		cmd     backend.Command
		state   backend.State
		reason  string
		changed bool
		wait    time.Duration
	}{
		{backend.CommandOpen, backend.ForcedOpen, "forced_open", true, -time.Millisecond},
		{backend.CommandOpen, backend.ForcedOpen, "forced_open", false, -time.Millisecond},
		{backend.CommandDisable, backend.Disabled, "disabled", true, 0},
		{backend.CommandDisable, backend.Disabled, "disabled", false, 0},
		{backend.CommandClose, backend.Closed, "forced_close", true, 0},
		{backend.CommandClose, backend.Closed, "forced_close", false, 0},
		{backend.CommandReset, backend.Closed, "reset", true, 0},
		{backend.CommandReset, backend.Closed, "reset", true, 0},
	}
	var want []string
	for i, st := range steps {
		step := fmt.Sprintf("step %d (command %d)", i, st.cmd)
		now := e.redisNow()
		r := e.force(name, "op", st.cmd)
		switch {
		case st.cmd == backend.CommandReset:
			// A reset starts afresh from Redis's clock, never going back.
			if r.Generation <= gen || r.Generation < now {
				t.Errorf("%s: generation %d, want > %d and >= Redis's clock %d", step, r.Generation, gen, now)
			}
			gen = r.Generation
		case st.changed:
			gen++
		}
		if st.changed {
			want = append(want, fmt.Sprintf("%d %s", gen, name))
		}
		fleetCheck(t, step, "Verdict", r.Verdict, backend.VerdictOK, "State", r.State, st.state,
			"Reason", r.Reason, st.reason, "Changed", r.Changed, st.changed, "Generation", r.Generation, gen,
			"Wait", r.Wait, st.wait, "By", r.By, "op")
		if st.cmd == backend.CommandReset && r.Counts != (backend.Counts{}) {
			t.Errorf("%s: counts after reset: %+v, want zero", step, r.Counts)
		}

		// What the state does with calls.
		switch st.state {
		case backend.ForcedOpen:
			a := e.acquire(name, "i1", "L")
			fleetCheck(t, step+": Acquire", "Verdict", a.Verdict, backend.VerdictReject, "Wait", a.Wait, -time.Millisecond)
		case backend.Disabled:
			a := e.acquire(name, "i1", "L")
			fleetCheck(t, step+": Acquire", "Verdict", a.Verdict, backend.VerdictAllow)
			rec := e.record(name, "i1", gen, "", "FFFFFF")
			fleetCheck(t, step+": six failures", "Verdict", rec.Verdict, backend.VerdictCounted,
				"State", rec.State, backend.Disabled, "Changed", rec.Changed, false)
		}
	}
	if got := published(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("published: got %q, want %q", got, want)
	}

	q := e.req(name, "op")
	q.Command = backend.Command(99)
	before := e.hook.evals.Load()
	if _, err := e.st.Force(context.Background(), q); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("Force(99): got %v, want an unknown command error", err)
	}
	if n := e.hook.evals.Load() - before; n != 0 {
		t.Errorf("Force(99) ran %d scripts, want none", n)
	}
}

// TestRedisIdleExpiry: every write renews the idle expiry of the keys it
// writes (a quorum puts the troubled-instances key in use).
func TestRedisIdleExpiry(t *testing.T) {
	const name = "idle"
	s := fleetPolicy(50*time.Millisecond, time.Minute)
	s.Quorum = 2
	e := newFleetEnv(t, store.Options{IdleExpiry: time.Second}, s)
	ctx := context.Background()
	keys := e.st.Keys(name)
	prefix := "{fleet-TestRedisIdleExpiry:idle}:v1:"
	for i, suffix := range []string{"state", "win", "inst", "lease"} {
		if keys[i] != prefix+suffix {
			t.Errorf("Keys(%q)[%d] = %q, want %q", name, i, keys[i], prefix+suffix)
		}
	}
	pttl := func(step string, which ...int) {
		t.Helper()
		for _, i := range which {
			d, err := e.raw.PTTL(ctx, keys[i]).Result()
			if err != nil {
				t.Fatalf("PTTL: %v", err)
			}
			fleetWithin(t, step, "PTTL of "+keys[i], d, time.Millisecond, time.Second)
		}
	}
	gen := e.read(name).Generation
	pttl("after Read", 0)
	e.record(name, "i1", gen, "", "FF")
	pttl("after two failures", 0, 1, 2)
	e.record(name, "i2", gen, "", "F") // a second instance makes the quorum
	e.waitOpenOver(name)
	if r := e.acquire(name, "i1", "L"); r.Verdict != backend.VerdictProbe {
		t.Fatalf("Acquire: verdict %v, want probe", r.Verdict)
	}
	pttl("after a probe lease", 0, 3)

	// The default idle expiry is a day.
	d := newFleetEnv(t, store.Options{}, fleetPolicy(time.Minute, time.Minute))
	d.read(name)
	got, err := d.raw.PTTL(ctx, d.st.Keys(name)[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	fleetWithin(t, "default IdleExpiry", "PTTL", got, store.DefaultIdleExpiry-time.Minute, store.DefaultIdleExpiry)
}

// TestRedisErrors: foreign data, bad arguments and a cancelled caller are
// errors of their own kinds, and none of them makes the store think Redis
// is down.
func TestRedisErrors(t *testing.T) {
	e := newFleetEnv(t, store.Options{}, fleetPolicy(time.Minute, time.Minute))
	ctx := context.Background()
	if err := e.raw.Set(ctx, e.st.Keys("foreign")[0], "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	cases := []struct {
		name    string
		call    func() error
		corrupt bool
		target  error
	}{
		{"foreign data", func() error { _, err := e.st.Read(ctx, e.req("foreign", "i1")); return err }, true, nil},
		{"bad name", func() error {
			_, err := e.st.Read(ctx, backend.Request{Name: "a{b}", Instance: "i1"})
			return err
		}, false, breaker.ErrInvalidSettings},
		{"foreign data, plain read", func() error {
			q := e.req("foreign", "i1")
			q.Full = false
			_, err := e.st.Read(ctx, q)
			return err
		}, true, nil},
		{"cancelled caller", func() error { _, err := e.st.Read(cancelled, e.req("fine", "i1")); return err }, false, context.Canceled},
	}
	for _, tc := range cases {
		err := tc.call()
		switch {
		case err == nil:
			t.Errorf("%s: got no error", tc.name)
		case errors.Is(err, store.ErrCorrupt) != tc.corrupt:
			t.Errorf("%s: got %v; matches ErrCorrupt: %v, want %v", tc.name, err, !tc.corrupt, tc.corrupt)
		case errors.Is(err, store.ErrUnavailable):
			t.Errorf("%s: got %v, which matches ErrUnavailable", tc.name, err)
		case tc.target != nil && !errors.Is(err, tc.target):
			t.Errorf("%s: got %v, want it to match %v", tc.name, err, tc.target)
		}
		// Redis answered: the next call goes through at once.
		if _, err := e.st.Read(ctx, e.req("fine", "i1")); err != nil {
			t.Errorf("after %s: Read of a clean breaker: %v", tc.name, err)
		}
	}
}

// TestRedisOutage: a dead Redis costs one attempt per cooldown and errors
// matching ErrUnavailable; a hung one costs about Timeout per attempt even
// with go-redis's default client options; after a restart the store
// answers again, with a larger generation.
func TestRedisOutage(t *testing.T) {
	const (
		timeout  = 150 * time.Millisecond
		cooldown = 400 * time.Millisecond
		slack    = 700 * time.Millisecond // far below go-redis's default ReadTimeout (3s)
		fast     = 200 * time.Millisecond // a fast failure, even on a busy machine
		name     = "outage"
	)
	e := newFleetEnv(t, store.Options{Timeout: timeout, Cooldown: cooldown}, fleetPolicy(time.Minute, time.Minute))
	ctx := context.Background()
	gen := e.read(name).Generation

	// attempt reads once and returns the error, how long it took and
	// whether it reached for Redis.
	attempt := func() (took time.Duration, tried bool, err error) {
		before := e.hook.evals.Load()
		t0 := time.Now()
		_, err = e.st.Read(ctx, e.req(name, "i1"))
		return time.Since(t0), e.hook.evals.Load() > before, err
	}
	for _, hang := range []bool{false, true} {
		what := map[bool]string{false: "stopped", true: "frozen"}[hang]
		if hang {
			e.srv.Freeze()
		} else {
			e.srv.Stop()
		}
		took, tried, err := attempt()
		if !errors.Is(err, store.ErrUnavailable) || !tried || took > timeout+slack {
			t.Errorf("%s Redis, first call: got %v after %v (tried Redis: %v), want ErrUnavailable within %v",
				what, err, took, tried, timeout)
		}
		began := time.Now()
		for i := 0; i < 20; i++ {
			took, tried, err := attempt()
			if time.Since(began) >= cooldown-50*time.Millisecond {
				break // the cooldown may end: a new attempt is due
			}
			if !errors.Is(err, store.ErrUnavailable) || tried || took > fast {
				t.Errorf("%s Redis, call %d in the cooldown: got %v after %v (tried Redis: %v), want ErrUnavailable at once",
					what, i, err, took, tried)
			}
		}
		// After the cooldown exactly one call tries again.
		<-time.After(time.Until(began.Add(cooldown)))
		took, tried, err = attempt()
		if !errors.Is(err, store.ErrUnavailable) || !tried || took > timeout+slack {
			t.Errorf("%s Redis, after the cooldown: got %v after %v (tried Redis: %v), want one more attempt within %v",
				what, err, took, tried, timeout)
		}
		if hang {
			e.srv.Thaw()
		} else {
			e.srv.Restart()
		}
		deadline := time.Now().Add(fleetWait)
		for {
			r, err := e.st.Read(ctx, e.req(name, "i1"))
			if err == nil {
				if hang && r.Generation != gen || !hang && r.Generation <= gen {
					t.Errorf("%s Redis back: generation %d; old one %d", what, r.Generation, gen)
				}
				gen = r.Generation
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s Redis back: store still failing after %v: %v", what, fleetWait, err)
			}
			<-time.After(20 * time.Millisecond)
		}
	}
}

// TestRedisRunKeepsEachInstancesOrder: an instance's batch is not put
// before its earlier entries in the run, whatever its ages say (field
// t.<instance>); a value there that is not a time is no floor, and is
// written anew.
func TestRedisRunKeepsEachInstancesOrder(t *testing.T) {
	const name = "own-order"
	e := newFleetEnv(t, store.Options{}, fleetPolicy(time.Minute, time.Minute))
	ctx := context.Background()
	gen := e.read(name).Generation
	key := e.st.Keys(name)[0]
	seq := int64(0)
	rec := func(step string, b backend.Batch) backend.Reply {
		t.Helper()
		seq++
		q := e.req(name, "i1")
		q.Known, q.Generation, q.Seq, q.Batch = gen, gen, seq, b
		q.Batch.Settle = time.Hour
		r, err := e.st.Record(ctx, q)
		return e.must(step, r, err)
	}
	fail := backend.Batch{Failures: 2, Lead: 2, Trail: 2}
	if r := rec("2 failures", fail); r.Counts.ConsecutiveFailures != 2 {
		t.Fatalf("2 failures: %+v", r.Counts)
	}
	// The success came after the failures (a later batch), though its age
	// says half an hour: it ends them.
	late := backend.Batch{Successes: 1, SuccessAge: 30 * time.Minute}
	if r := rec("a late success", late); r.Counts.ConsecutiveFailures != 0 {
		t.Fatalf("after a success of the same instance: %d consecutive failures, want 0", r.Counts.ConsecutiveFailures)
	}
	one := backend.Batch{Failures: 1, Lead: 1, Trail: 1}
	if r := rec("1 failure", one); r.Counts.ConsecutiveFailures != 1 || r.State != backend.Closed {
		t.Fatalf("1 failure after the success: %+v, want closed with 1 consecutive failure", r)
	}
	for _, v := range []string{"x", "-5", "99999999999999999999"} {
		if err := e.raw.HSet(ctx, key, "t.i1", v).Err(); err != nil {
			t.Fatal(err)
		}
		r := rec("t.i1 "+v, backend.Batch{Successes: 1})
		if r.Counts.ConsecutiveFailures != 0 {
			t.Fatalf("t.i1 %q: %+v", v, r.Counts)
		}
		rec("1 failure", one)
		got, err := e.raw.HGet(ctx, key, "t.i1").Result()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := strconv.ParseInt(got, 10, 64); err != nil || got == v {
			t.Errorf("t.i1 was %q: now %q, want a time written anew", v, got)
		}
	}
}

// TestRedisPlainReadOfAStateNewerThanItsClock: a plain read sends TIME and
// HMGET in one pipeline, and another client's script may run between them;
// the transition it wrote is then later than the read's clock. The read
// takes the transition's time as its clock, so that an open breaker's wait
// is never longer than its open duration.
func TestRedisPlainReadOfAStateNewerThanItsClock(t *testing.T) {
	const name = "newer"
	e := newFleetEnv(t, store.Options{}, fleetPolicy(time.Minute, time.Minute))
	ctx := context.Background()
	gen := e.read(name).Generation
	q := e.req(name, "i1")
	q.Known, q.Generation, q.Seq, q.Batch = gen, gen, 1, backend.Batch{Failures: 3, Lead: 3, Trail: 3}
	if r, err := e.st.Record(ctx, q); err != nil || r.State != backend.Open {
		t.Fatalf("3 failures: %+v, %v; want open", r, err)
	}
	key := e.st.Keys(name)[0]
	h, err := e.raw.HMGet(ctx, key, "at", "probe_at").Result()
	if err != nil {
		t.Fatal(err)
	}
	at, _ := strconv.ParseInt(h[0].(string), 10, 64)
	probeAt, _ := strconv.ParseInt(h[1].(string), 10, 64)
	// As if the trip ran 300 ms after the read's TIME.
	shift := e.redisNow() + 300 - at
	if err := e.raw.HSet(ctx, key, "at", at+shift, "probe_at", probeAt+shift).Err(); err != nil {
		t.Fatal(err)
	}
	plain := e.req(name, "reader")
	plain.Full = false
	r, err := e.st.Read(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != backend.Open || r.Wait <= 0 || r.Wait > time.Minute {
		t.Errorf("read: %v, wait %v; want open, waiting at most the open duration %v", r.State, r.Wait, time.Minute)
	}
	if got := r.ServerTime.UnixMilli(); got != at+shift {
		t.Errorf("read's clock: %d, want the transition's %d", got, at+shift)
	}
}
