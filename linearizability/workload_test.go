package linearizability

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker/backend"
	"github.com/breakwater-go/breakwater/store"
)

// The workload: instances pick a breaker and an operation at random and
// carry it out with one store call (one script, or the plain read's one
// round trip), recording its request, its reply and when it was called and
// answered.

// policies are the breakers' settings, small enough in time that breakers
// trip, open, half-open, probe, lose leases and close again many times in a
// run: consecutive failures with growing, jittered open durations and two
// probes, from instances that report one by one or flush every 1, 3 or
// 6ms; failure and slow-call rates over a window of 20ms; consecutive
// failures from at least two distinct instances; runs of failures long
// enough to wait for their failures to settle; and runs that outgrow what
// the store keeps of them.
var policies = []*policy{
	{consecutive: 3, minCalls: 20, window: 60_000, probes: 2, successes: 2, lease: 8,
		open: 4, openMax: 16, jitter: 0.5, settle: -1},
	{rate: 0.5, slowRate: 0.8, minCalls: 8, window: 20, probes: 1, successes: 1, lease: 5,
		open: 3, openMax: 3, settle: 2000},
	{consecutive: 3, quorum: 2, minCalls: 20, window: 30, probes: 1, successes: 1, lease: 5,
		open: 3, openMax: 3, settle: 3000},
	{consecutive: 6, minCalls: 20, window: 60_000, probes: 1, successes: 1, lease: 5,
		open: 3, openMax: 3, settle: 4000},
	{consecutive: 200, minCalls: 20, window: 60_000, probes: 1, successes: 1, lease: 5,
		open: 3, openMax: 3, settle: 2000},
}

// instanceSettles are the settling times (µs) of a policy with settle -1,
// by instance: outcomes reported one by one, and flush intervals of 1, 3
// and 6ms.
var instanceSettles = []int64{0, 1000, 3000, 6000}

// settleOf is how late instance id's batches to a breaker of p may arrive.
func settleOf(p *policy, id int) int64 {
	if p.settle < 0 {
		return instanceSettles[id%len(instanceSettles)]
	}
	return p.settle
}

// settings turns p into the backend.Policy the store sends the scripts.
func settings(p *policy) *backend.Policy {
	ms := func(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
	return &backend.Policy{ConsecutiveFailures: int(p.consecutive), FailureRate: p.rate,
		SlowCallRate: p.slowRate, MinimumCalls: int(p.minCalls),
		Window: ms(p.window), WindowBuckets: buckets, Quorum: int(max(1, p.quorum)), OpenDuration: ms(p.open),
		MaxOpenDuration: ms(p.openMax), OpenJitter: p.jitter, MaxProbes: int(p.probes),
		ProbeSuccesses: int(p.successes), ProbeLease: ms(p.lease)}
}

// target is a breaker of the run.
type target struct {
	name     string
	pol      *policy
	settings *backend.Policy
}

// breakers are the breakers of a run: those the instances share, and the
// one the scenarios run on.
type breakers struct {
	shared []target
	scenes target
}

// executor carries out one operation with one call to Redis.
type executor interface {
	do(ctx context.Context, in *input) (*output, error)
}

// scripts is the real thing: the store's scripts and its plain read. Each
// instance has a store of its own, as each process of a fleet has.
type scripts struct {
	stores   []*store.Store // by instance
	settings map[*policy]*backend.Policy
}

// sentKey is the context key of where renewHook puts ARGV[33] of a record.
type sentKey struct{}

// renewHook takes note of what the store asked the record script about the
// keys' expiry (ARGV[33]: 1 to renew them): the script's fast path depends
// on it, and the store decides it by itself (once per eighth of the idle
// expiry, per process and breaker).
type renewHook struct{}

func (renewHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (renewHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (renewHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if sent, ok := ctx.Value(sentKey{}).(*string); ok {
			// EVALSHA (or EVAL) script numkeys key... arg...
			args := cmd.Args()
			if len(args) > 3 {
				if n, err := strconv.Atoi(fmt.Sprint(args[2])); err == nil && n >= 0 && len(args) >= 3+n+33 {
					*sent = fmt.Sprint(args[3+n+32])
				}
			}
		}
		return next(ctx, cmd)
	}
}

func (b *scripts) request(in *input) backend.Request {
	req := backend.Request{Name: in.name, Instance: instName(in.inst), Policy: b.settings[in.pol],
		Known: in.known, Lease: leaseName(in.lease), Generation: in.gen, Seq: in.seq,
		OpenFor: time.Duration(in.openFor) * time.Millisecond, Random: in.random}
	bt := in.batch
	us := func(n int64) time.Duration { return time.Duration(n) * time.Microsecond }
	req.Batch = backend.Batch{Successes: uint64(bt.ok), Failures: uint64(bt.ko), Slow: uint64(bt.slow),
		Lead: uint64(bt.lead), Trail: uint64(bt.trail), Run: uint64(bt.run), SuccessAge: us(bt.okAge),
		FailureAge: us(bt.koAge), Settle: us(bt.settle)}
	if in.through != 0 {
		req.SettledThrough = time.UnixMicro(in.through)
	}
	switch in.cmd {
	case "open":
		req.Command = backend.CommandOpen
	case "close":
		req.Command = backend.CommandClose
	case "disable":
		req.Command = backend.CommandDisable
	case "reset":
		req.Command = backend.CommandReset
	}
	return req
}

// do carries out in with the store of its instance; a record's in learns
// whether the store asked for the keys' expiry to be renewed.
func (b *scripts) do(ctx context.Context, in *input) (*output, error) {
	req := b.request(in)
	st := b.stores[in.inst]
	var rep backend.Reply
	var err error
	switch in.kind {
	case opAcquire:
		rep, err = st.Acquire(ctx, req)
	case opRecord:
		var sent string
		rep, err = st.Record(context.WithValue(ctx, sentKey{}, &sent), req)
		// A short answer is the fast script's, which takes no ARGV[33];
		// else the full script ran (after the fast one, or alone).
		if err == nil && (rep.Short && sent != "" || !rep.Short && sent != "0" && sent != "1") {
			err = fmt.Errorf("record sent ARGV[33] %q with a short answer %v", sent, rep.Short)
		}
		in.renew = sent == "1"
	case opForce:
		rep, err = st.Force(ctx, req)
	case opReadFull:
		req.Full = true
		rep, err = st.Read(ctx, req)
	case opRead:
		rep, err = st.Read(ctx, req)
	}
	if err != nil {
		return nil, err
	}
	return toOutput(rep), nil
}

func stateName(s backend.State) string { return strings.ReplaceAll(s.String(), "-", "_") }

func toOutput(r backend.Reply) *output {
	if r.Short {
		return &output{verdict: string(r.Verdict), st: stateName(r.State), gen: r.Generation, short: true}
	}
	c := r.Counts
	wait := int64(-1)
	if r.Wait >= 0 {
		wait = r.Wait.Milliseconds()
	}
	return &output{verdict: string(r.Verdict), st: stateName(r.State), from: stateName(r.From),
		why: r.Reason, by: r.By, lease: r.Lease, gen: r.Generation, wait: wait,
		inState: r.InState.Milliseconds(), ok: int64(c.Successes), ko: int64(c.Failures),
		cf: int64(c.ConsecutiveFailures), hs: int64(c.ProbeSuccesses), wt: int64(c.WindowCalls),
		wf: int64(c.WindowFailures), ws: int64(c.WindowSlowCalls), troubled: int64(c.TroubledInstances),
		tok: int64(c.TotalSuccesses), tko: int64(c.TotalFailures), tslow: int64(c.TotalSlowCalls),
		tstale: int64(c.TotalStale), trips: int64(c.Trips), pko: int64(c.PreviousFailures),
		changed: r.Changed, now: r.ServerTime.UnixMilli(), nowUs: r.ServerTime.UnixMicro()}
}

// nonAtomic is the deliberately broken variant: it records a batch by
// reading the breaker's keys in one round trip, working out the new state
// in Go (with the model, which mirrors fast.lua and record.lua), and writing
// it back in a second round trip. Everything else goes to the real
// scripts. Run alone it is correct; run concurrently it loses updates. It
// never asks for a renewal, and leaves the keys' expiry and its field ren
// to the real scripts.
type nonAtomic struct {
	scripts
	client *redis.Client
}

func (b *nonAtomic) do(ctx context.Context, in *input) (*output, error) {
	if in.kind != opRecord {
		return b.scripts.do(ctx, in)
	}
	keys := b.stores[in.inst].Keys(in.name)
	pipe := b.client.Pipeline()
	clock := pipe.Time(ctx)
	hash := pipe.HGetAll(ctx, keys[0])
	win := pipe.HGetAll(ctx, keys[1])
	troubled := pipe.ZRangeWithScores(ctx, keys[2], 0, -1)
	leases := pipe.ZRangeWithScores(ctx, keys[3], 0, -1)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	s, err := decode(hash.Val(), win.Val(), troubled.Val(), leases.Val())
	if err != nil {
		return nil, err
	}
	now := clock.Val()
	next, out, wrote := apply(s, in, now.UnixMicro(), false)
	if !wrote {
		return &out, nil
	}
	pipe = b.client.Pipeline()
	pipe.HSet(ctx, keys[0], encode(next, in.inst)...)
	pipe.Del(ctx, keys[1], keys[2], keys[3])
	for i, at := range next.trouble {
		if at != 0 {
			pipe.ZAdd(ctx, keys[2], redis.Z{Score: float64(at), Member: instName(i)})
		}
	}
	for k, bk := range next.win {
		if bk.i != 0 {
			pipe.HSet(ctx, keys[1], "i"+strconv.Itoa(k), bk.i, "t"+strconv.Itoa(k), bk.t,
				"f"+strconv.Itoa(k), bk.f, "s"+strconv.Itoa(k), bk.s)
		}
	}
	for _, l := range next.leases {
		if l.id != 0 {
			pipe.ZAdd(ctx, keys[3], redis.Z{Score: float64(l.exp), Member: leaseName(l.id)})
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	return &out, nil
}

// decode reads a breaker's keys into the model's state.
func decode(h, w map[string]string, troubled, leases []redis.Z) (state, error) {
	var s state
	if h["gen"] == "" {
		return s, nil
	}
	s.exists = true
	var bad error
	parse := func(what, v string) int64 {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil && bad == nil {
			bad = fmt.Errorf("decode %s: %w", what, err)
		}
		return n
	}
	num := func(f string) int64 { return parse("field "+f, h[f]) }
	s.st, s.from, s.why, s.by = h["st"], h["from"], h["why"], h["by"]
	s.gen, s.fl, s.probeAt, s.trips, s.at = num("gen"), num("fl"), num("probe_at"), num("trips"), num("at")
	s.ok, s.ko, s.cf, s.hs = num("ok"), num("ko"), num("cf"), num("hs")
	s.tok, s.tko, s.tslow, s.tstale, s.pko = num("tok"), num("tko"), num("tslow"), num("tstale"), num("pko")
	s.cfat = num("cfat")
	var run []entry
	for _, x := range strings.Fields(h["rl"]) {
		at, n, _ := strings.Cut(x, ":")
		run = append(run, entry{at: parse("run time", at), n: parse("run count", n)})
	}
	if len(run) > maxRun {
		return s, fmt.Errorf("decode: a run of %d entries", len(run))
	}
	s.setRun(run)
	switch ri := h["ri"]; ri {
	case "":
		s.ri = riNone
	case "*":
		s.ri = riSeveral
	default:
		s.ri = int(parse("run instance", strings.TrimPrefix(ri, "inst-"))) + 1
	}
	for i := range s.seq {
		if v, ok := h["q."+instName(i)]; ok {
			s.seq[i] = parse("sequence", v)
		}
		if v, ok := h["t."+instName(i)]; ok {
			s.tl[i] = parse("run time", v)
		}
	}
	for k := range s.win {
		get := func(f string) int64 {
			if v, ok := w[f+strconv.Itoa(k)]; ok {
				return parse("window field "+f+strconv.Itoa(k), v)
			}
			return 0
		}
		s.win[k] = bucket{i: get("i"), t: get("t"), f: get("f"), s: get("s")}
	}
	for _, z := range troubled {
		m, _ := z.Member.(string)
		i := parse("troubled instance", strings.TrimPrefix(m, "inst-"))
		if i >= 0 && i < instances {
			s.trouble[i] = int64(z.Score)
		}
	}
	for i, l := range leases {
		if i < maxLeases {
			m, _ := l.Member.(string)
			s.leases[i] = lease{id: parse("lease", strings.TrimPrefix(m, "L")), exp: int64(l.Score)}
		}
	}
	return s, bad
}

// encode is the state hash's fields of s, as record.lua would write them
// (but ren).
func encode(s state, inst int) []interface{} {
	rl := make([]string, s.rn)
	for i, x := range s.run[:s.rn] {
		rl[i] = fmt.Sprintf("%d:%d", x.at, x.n)
	}
	return []interface{}{"st", s.st, "gen", s.gen, "fl", s.fl, "probe_at", s.probeAt, "trips", s.trips,
		"from", s.from, "why", s.why, "by", s.by, "at", s.at, "ok", s.ok, "ko", s.ko, "cf", s.cf,
		"cfat", s.cfat, "hs", s.hs, "tok", s.tok, "tko", s.tko, "tslow", s.tslow, "tstale", s.tstale,
		"pko", s.pko, "rl", strings.Join(rl, " "), "ri", riName(s.ri),
		"q." + instName(inst), s.seq[inst], "t." + instName(inst), s.tl[inst]}
}

// run is one run of the workload.
type run struct {
	t       *testing.T
	backend executor
	targets []target
	base    time.Time
	leaseID atomic.Int64
	calls   atomic.Int64

	// serial sends the flushes meant to be sent twice at once one after
	// the other: every operation then runs alone.
	serial bool

	// sceneSeq is the scenarios' last flush sequence, per instance.
	sceneSeq [instances]int64

	mu      sync.Mutex
	history []porcupine.Operation
	failed  atomic.Bool
}

// call carries out in and records it in the history. The history has a
// copy of in of its own, which the backend completes with what the store
// decided by itself (renew).
func (r *run) call(ctx context.Context, client int, in *input) *output {
	if r.failed.Load() {
		return nil
	}
	r.calls.Add(1)
	in = ptr(*in)
	start := time.Since(r.base).Nanoseconds()
	out, err := r.backend.do(ctx, in)
	end := time.Since(r.base).Nanoseconds()
	if err != nil {
		if r.failed.CompareAndSwap(false, true) {
			r.t.Errorf("%s of %s on %s: %v", in.kind, instName(in.inst), in.name, err)
		}
		return nil
	}
	r.mu.Lock()
	r.history = append(r.history, porcupine.Operation{ClientId: client, Input: in, Call: start,
		Output: out, Return: end})
	r.mu.Unlock()
	return out
}

// instance is one instance's view of the breakers.
type instance struct {
	id       int
	rng      *rand.Rand
	seen     []int64  // the highest generation seen, per breaker
	seq      []int64  // the last flush sequence, per breaker
	last     []*input // the last flush, per breaker (resent as a retry)
	lease    []int64  // a probe lease held, per breaker
	leaseGen []int64
	// through is Redis's time (µs) through which this instance's failures
	// settled, per breaker, sent with the next flush (0: none), and lookAt
	// when to look at them again (zero: no need), as a breaker keeps them.
	through []int64
	lookAt  []time.Time
	recent  int // the breaker of the last operation
}

// drive runs ops operations of instance id.
func (r *run) drive(ctx context.Context, id, ops int, seed int64) {
	n := len(r.targets)
	in := &instance{id: id, rng: rand.New(rand.NewSource(seed)),
		seen: make([]int64, n), seq: make([]int64, n), last: make([]*input, n), lease: make([]int64, n),
		leaseGen: make([]int64, n), through: make([]int64, n), lookAt: make([]time.Time, n)}
	for b := range in.seq {
		// A breaker's sequences are its clock in µs: the store forgets
		// an instance whose last one is older than its idle expiry (an
		// hour at least), which never happens here.
		in.seq[b] = r.base.UnixMicro()
	}
	for i := 0; i < ops && !r.failed.Load(); i++ {
		r.op(ctx, in)
	}
}

func (r *run) op(ctx context.Context, c *instance) {
	rng := c.rng
	b := rng.Intn(len(r.targets))
	if rng.Intn(10) < 4 {
		b = c.recent // calls come in bursts to one downstream
	}
	for i, at := range c.lookAt {
		if !at.IsZero() && time.Now().After(at) {
			b = i // failures this instance reported have settled: look again
			break
		}
	}
	c.recent = b
	tg := r.targets[b]
	known := c.seen[b]
	if rng.Intn(100) == 0 {
		known += 3 // an instance that knows a generation the store has not reached
	}
	in := &input{breaker: b, name: tg.name, inst: c.id, pol: tg.pol, known: known,
		random: []float64{0.25, 0.5, 0.75}[rng.Intn(3)]}
	see := func(out *output) {
		if out != nil && out.gen > c.seen[b] {
			c.seen[b] = out.gen
		}
	}
	if !c.lookAt[b].IsZero() && time.Now().After(c.lookAt[b]) {
		c.lookAt[b] = time.Time{}
		in.kind, in.gen, in.through = opRecord, c.seen[b], c.through[b]
		c.through[b] = 0
		in.batch.settle = settleOf(tg.pol, c.id)
		c.seq[b]++
		in.seq = c.seq[b]
		c.last[b] = in
		see(r.call(ctx, c.id, in))
		return
	}
	if c.lease[b] != 0 && rng.Intn(10) < 7 {
		// report the probe, or give up its lease (it expires)
		if rng.Intn(10) < 8 {
			in.kind = opRecord
			in.lease, in.gen, in.through = c.lease[b], c.leaseGen[b], c.through[b]
			c.through[b] = 0
			switch x := rng.Intn(20); {
			case x < 13:
				in.batch = batch{ok: 1, slow: int64(rng.Intn(4) / 3), okAge: rng.Int63n(200)}
			case x < 18:
				in.batch = batch{ko: 1, lead: 1, trail: 1, koAge: rng.Int63n(200)}
			}
			in.batch.settle = settleOf(tg.pol, c.id)
			c.seq[b]++
			in.seq = c.seq[b]
			c.last[b] = in
			see(r.call(ctx, c.id, in))
		}
		c.lease[b] = 0
		return
	}
	switch x := rng.Intn(200); {
	case x < 50:
		in.kind = opAcquire
		in.lease = r.leaseID.Add(1)
		out := r.call(ctx, c.id, in)
		see(out)
		if out != nil && out.verdict == "probe" {
			c.lease[b], c.leaseGen[b] = in.lease, out.gen
		}
	case x < 140:
		r.flush(ctx, c, b, in, false)
	case x < 146:
		r.flush(ctx, c, b, in, true)
	case x < 156:
		if prev := c.last[b]; prev != nil {
			// a retry of the last flush: the same instance and sequence
			see(r.call(ctx, c.id, prev))
		}
	case x < 157:
		in.kind = opForce
		switch y := rng.Intn(100); {
		case y < 20:
			in.cmd = "reset"
		case y < 60:
			in.cmd = "close"
		case y < 85:
			in.cmd, in.openFor = "open", int64(5+rng.Intn(20))
		case y < 92:
			in.cmd = "open"
		default:
			in.cmd = "disable"
		}
		see(r.call(ctx, c.id, in))
	case x < 178:
		in.kind = opRead
		see(r.call(ctx, c.id, in))
	default:
		in.kind = opReadFull
		see(r.call(ctx, c.id, in))
	}
}

// flush records a batch of outcomes; twice sends it twice at once, as an
// instance whose first try timed out in flight and retried would.
func (r *run) flush(ctx context.Context, c *instance, b int, in *input, twice bool) {
	rng := c.rng
	in.kind = opRecord
	// The downstream goes through phases (operations of all instances):
	// healthy (200), down (300), failing (250), slow (400), split (300: it
	// fails for half the instances only, as over a bad network path), down
	// for longer (800), and quiet (750: hardly a failure or a slow call, the
	// fast path's case).
	fail, slow := 20, 10
	switch phase := r.calls.Load() % 3000; {
	case phase >= 2250:
		fail, slow = 1, 1
	case phase >= 1450:
		fail, slow = 100, 10
	case phase >= 1150:
		fail, slow = 2, 10
		if c.id%2 == 0 {
			fail = 98
		}
	case phase >= 750:
		fail, slow = 10, 95
	case phase >= 500:
		fail, slow = 70, 10
	case phase >= 200:
		fail, slow = 100, 10
	}
	var bt backend.Batch
	for i, n := 0, rng.Intn(7); i < n; i++ { // 0 outcomes: a request to catch up
		bt.Add(rng.Intn(100) < fail, rng.Intn(100) < slow)
	}
	in.batch = batch{ok: int64(bt.Successes), ko: int64(bt.Failures), slow: int64(bt.Slow),
		lead: int64(bt.Lead), trail: int64(bt.Trail), run: int64(bt.Run), settle: settleOf(in.pol, c.id)}
	// When the outcomes happened: within the last flush interval (the last
	// 200µs for outcomes reported one by one), or later for a batch that
	// waited (a flush that failed and was sent again); now and then a
	// success an hour old.
	settle := in.batch.settle
	span := max(settle, 200)
	if rng.Intn(5) == 0 {
		span = 4*span + 2000
	}
	if bt.Successes > 0 {
		in.batch.okAge = rng.Int63n(span + 1)
		if rng.Intn(20) == 0 {
			in.batch.okAge = time.Hour.Microseconds()
		}
		if bt.Trail > 0 {
			in.batch.koAge = rng.Int63n(min(in.batch.okAge, span) + 1)
		}
	} else if bt.Failures > 0 {
		in.batch.koAge = rng.Int63n(span + 1)
	}
	switch x := rng.Intn(20); {
	case x < 15:
		in.gen = c.seen[b]
	case x < 17:
		in.gen = 0 // admitted while the instance knew no generation
	default:
		in.gen = max(0, c.seen[b]-int64(1+rng.Intn(3))) // admitted under an older one
	}
	in.through, c.through[b] = c.through[b], 0
	c.seq[b]++
	in.seq = c.seq[b]
	c.last[b] = in
	if r.serial && twice {
		r.call(ctx, c.id, in)
		twice = false
	}
	var out *output
	if !twice {
		out = r.call(ctx, c.id, in)
	} else {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.call(ctx, instances+c.id, in)
		}()
		out = r.call(ctx, c.id, in)
		wg.Wait()
	}
	if out == nil {
		return
	}
	if out.gen > c.seen[b] {
		c.seen[b] = out.gen
	}
	if bt.Failures > 0 && settle > 0 && in.pol.consecutive > 0 {
		// As a breaker does: its failures settle through their time, and
		// it looks again once they have (when nothing else brings them up).
		c.through[b] = max(c.through[b], out.nowUs-in.batch.koAge)
		c.lookAt[b] = time.Now().Add(time.Duration(settle-in.batch.koAge+500) * time.Microsecond)
	}
}

// workload runs opsPer operations on each of the instances against the
// targets and returns the history.
// With one instance, every operation runs alone.
func workload(t *testing.T, be executor, targets breakers, nInstances, opsPer int, seed int64) []porcupine.Operation {
	t.Helper()
	r := &run{t: t, backend: be, targets: targets.shared, base: time.Now(), serial: nInstances == 1}
	for i := range r.sceneSeq {
		r.sceneSeq[i] = r.base.UnixMicro() // sequences are clocks in µs, as a breaker's are
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var done atomic.Bool
	for i := 0; i < nInstances; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r.drive(ctx, i, opsPer, seed+int64(i))
		}(i)
	}
	scenes := make(chan struct{})
	go func() {
		defer close(scenes)
		// at least minRounds rounds, and more while the instances run
		for i := 0; !r.failed.Load() && (i < minRounds || !done.Load()); i++ {
			r.scenarios(ctx, targets.scenes)
		}
	}()
	wg.Wait()
	done.Store(true)
	<-scenes
	if r.failed.Load() {
		t.FailNow()
	}
	return r.history
}

func ptr[T any](v T) *T { return &v }
