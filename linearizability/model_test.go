package linearizability

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"strings"

	"github.com/anishathalye/porcupine"
)

// The model: a breaker's shared state as the scripts of lua/ keep it, and a
// step for each operation that mirrors the script (or the plain read) that
// carries it out. Every step takes Redis's clock from the operation's
// output, so that what depends on time (an open breaker half-opens once its
// open time is over, probe leases expire, window buckets slide) is decided
// as the script decided it. Steps are pure: they take a state and return a
// new one.

const (
	// instances is how many instances share each breaker.
	instances = 16
	// maxLeases bounds the live probe leases of a breaker (the largest
	// MaxProbes of the policies).
	maxLeases = 2
	// buckets is the WindowBuckets of every policy.
	buckets = 4
)

// opKind names an operation of the history.
type opKind int

const (
	opAcquire  opKind = iota + 1
	opRecord          // record.lua: one flush of a batch
	opForce           // force.lua
	opReadFull        // read.lua (Request.Full)
	opRead            // the plain read: HMGET of the state hash and TIME
)

var opNames = map[opKind]string{opAcquire: "acquire", opRecord: "record", opForce: "force",
	opReadFull: "read-full", opRead: "read"}

func (k opKind) String() string { return opNames[k] }

// policy is what the model needs of a breaker's settings, in ms.
type policy struct {
	consecutive       int64
	quorum            int64
	rate, slowRate    float64
	minCalls          int64
	window            int64
	probes, successes int64
	lease             int64
	open, openMax     int64
	jitter            float64
}

// batch is a record's outcomes (breaker.Batch, with the success's age
// reduced to "older than any failure counted" or not).
type batch struct {
	ok, ko, slow, lead, trail, run int64
	// old sends the last success as an hour old: older than every failure
	// the breaker counted (SuccessAge 0 makes it newer than all of them).
	old bool
}

// input is an operation's request.
type input struct {
	kind    opKind
	breaker int // the partition
	name    string
	inst    int
	pol     *policy
	known   int64
	lease   int64 // acquire: the lease to grant; record: the lease to release (0: none)
	gen     int64 // record: the generation the batch was admitted under
	seq     int64 // record
	batch   batch
	cmd     string // force: open, close, disable, reset
	openFor int64  // force open: ms
	random  float64
}

// output is what the store answered: breaker.Reply in ms, with Redis's clock.
type output struct {
	verdict, st, from, why, by, lease string
	gen, wait, inState                int64
	ok, ko, cf, hs                    int64
	wt, wf, ws, troubled              int64
	tok, tko, tslow, tstale           int64
	trips, pko                        int64
	changed                           bool
	now                               int64 // Redis's clock (ms)
}

type lease struct{ id, exp int64 } // id 0: none

type bucket struct{ i, t, f, s int64 }

// state is a breaker's keys: the state hash (with the instances' last
// sequences), the probe leases and the window; and the clock of the last
// script the model applied.
type state struct {
	exists                                  bool
	st, from, why, by                       string
	gen, fl, probeAt, trips, at             int64
	ok, ko, cf, hs, tok, tko, tslow, tstale int64
	pko                                     int64
	lfat                                    bool // a failure was counted in this generation
	cfat                                    int64
	leases                                  [maxLeases]lease
	trouble                                 [instances]int64 // troubled instances: time of the last failure or slow call (0: none)
	win                                     [buckets]bucket
	seq                                     [instances]int64
	last                                    int64
}

func leaseName(id int64) string {
	if id == 0 {
		return ""
	}
	return fmt.Sprintf("L%d", id)
}

// exec is one script's run on a state, as lib.lua's helpers.
type exec struct {
	s        state
	in       *input
	now      int64
	changed  bool
	created  bool
	windowOn bool
	sum      [3]int64 // window calls, failures, slow calls
}

func (e *exec) fresh(gen int64) {
	e.s = state{exists: true, st: "closed", gen: gen, fl: 1, from: "closed", why: "created",
		by: instName(e.in.inst), at: e.now, last: e.s.last}
	e.created = true
}

func (e *exec) width() int64 { return max(1, e.in.pol.window/buckets) }

func (e *exec) sums() {
	idx := e.now / e.width()
	e.sum = [3]int64{}
	for _, b := range e.s.win {
		if b.i > idx-buckets && b.i <= idx {
			e.sum[0] += b.t
			e.sum[1] += b.f
			e.sum[2] += b.s
		}
	}
}

// load is lib.lua's load: it creates the breaker when there is none.
func (e *exec) load(full bool) {
	if !e.s.exists {
		e.fresh(max(e.now, e.in.known+1))
	}
	p := e.in.pol
	if full || p.rate > 0 || p.slowRate > 0 {
		e.windowOn = true
		e.sums()
	}
}

func (e *exec) catchUp(known int64) {
	if known > e.s.gen {
		e.s.gen = known + 1
		if !e.created {
			e.changed = true
		}
	}
}

func (e *exec) openDuration() int64 {
	p := e.in.pol
	d := float64(p.open)
	if p.openMax > p.open {
		d = math.Min(float64(p.open)*math.Pow(2, float64(min(e.s.trips-1, 60))), float64(p.openMax))
	}
	if p.jitter > 0 {
		spread := float64(2*e.in.random - 1)
		d = d * float64(1+float64(p.jitter*spread))
	}
	return max(1, int64(math.Floor(d)))
}

func (e *exec) transition(to, why string) {
	s := &e.s
	s.from, s.st, s.why, s.by, s.at = s.st, to, why, instName(e.in.inst), e.now
	s.gen++
	s.fl = s.gen
	s.pko = s.ko
	s.ok, s.ko, s.cf, s.hs, s.probeAt, s.lfat, s.cfat = 0, 0, 0, 0, 0, false, 0
	switch to {
	case "open":
		s.trips++
		s.probeAt = e.now + e.openDuration()
	case "closed", "disabled":
		s.trips = 0
	}
	s.leases = [maxLeases]lease{}
	s.win = [buckets]bucket{}
	s.trouble = [instances]int64{}
	e.sum = [3]int64{}
	e.changed = true
}

func (e *exec) reply(verdict string, wait int64, lease string) output {
	s := &e.s
	switch s.st {
	case "open":
		wait = max(0, s.probeAt-e.now)
	case "forced_open":
		wait = -1
	}
	return output{verdict: verdict, st: s.st, gen: s.gen, wait: wait, from: s.from, why: s.why,
		by: s.by, inState: e.now - s.at, ok: s.ok, ko: s.ko, cf: s.cf, hs: s.hs,
		wt: e.sum[0], wf: e.sum[1], ws: e.sum[2], troubled: e.troubledNow(), tok: s.tok, tko: s.tko, tslow: s.tslow,
		tstale: s.tstale, lease: lease, changed: e.changed, trips: s.trips, pko: s.pko, now: e.now}
}

// dropLease removes a lease (ZREM) and keeps the live ones first.
func (s *state) dropLease(id int64) {
	var kept [maxLeases]lease
	n := 0
	for _, l := range s.leases {
		if l.id != 0 && l.id != id {
			kept[n] = l
			n++
		}
	}
	s.leases = kept
}

func (e *exec) acquire() output {
	e.load(false)
	e.catchUp(e.in.known)
	s := &e.s
	if s.st == "open" && e.now >= s.probeAt {
		e.transition("half_open", "open_timeout")
	}
	switch s.st {
	case "open", "forced_open":
		return e.reply("reject", 0, "")
	case "half_open":
		// ZREMRANGEBYSCORE -inf NOW, then count the live leases.
		var kept [maxLeases]lease
		n := 0
		first := int64(math.MaxInt64)
		for _, l := range s.leases {
			if l.id != 0 && l.exp > e.now {
				kept[n] = l
				n++
				first = min(first, l.exp)
			}
		}
		s.leases = kept
		if int64(n) < e.in.pol.probes {
			if n == maxLeases {
				panic("linearizability: more probes than maxLeases")
			}
			s.leases[n] = lease{id: e.in.lease, exp: e.now + e.in.pol.lease}
			return e.reply("probe", 0, leaseName(e.in.lease))
		}
		return e.reply("reject", max(0, first-e.now), "")
	}
	return e.reply("allow", 0, "")
}

func (e *exec) record() (output, bool) {
	e.load(false)
	in, s, b := e.in, &e.s, e.in.batch
	if in.seq > 0 && in.seq <= s.seq[in.inst] {
		// the script returns before it saves anything
		return e.reply("duplicate", 0, ""), false
	}
	e.catchUp(max(in.known, in.gen))
	if in.seq > 0 {
		s.seq[in.inst] = in.seq
	}
	if in.lease != 0 {
		s.dropLease(in.lease)
	}
	s.tok += b.ok
	s.tko += b.ko
	s.tslow += b.slow
	verdict := "counted"
	p := in.pol
	switch {
	case b.ok+b.ko == 0:
	case in.gen != 0 && in.gen < s.fl:
		s.tstale += b.ok + b.ko
		verdict = "stale"
	case s.st == "closed":
		s.ok += b.ok
		s.ko += b.ko
		if e.windowOn {
			idx := e.now / e.width()
			k := idx % buckets
			if s.win[k].i != idx {
				s.win[k] = bucket{i: idx}
			}
			s.win[k].t += b.ok + b.ko
			s.win[k].f += b.ko
			s.win[k].s += b.slow
			e.sums()
		}
		var longest int64
		if b.ok > 0 && s.lfat && b.old {
			longest = max(s.cf+b.trail, b.run, b.lead)
			if s.cf == 0 && b.trail > 0 {
				s.cfat = e.now
			}
			s.cf += b.trail
		} else {
			longest = max(s.cf+b.lead, b.run)
			if b.ko > 0 && s.cf == 0 && b.lead > 0 {
				s.cfat = e.now
			}
			if b.ok > 0 {
				s.cfat = 0
				if b.trail > 0 {
					s.cfat = e.now
				}
				s.cf = b.trail
			} else {
				s.cf += b.ko
			}
		}
		if b.ko > 0 {
			s.lfat = true
		}
		if b.ko > 0 || b.slow > 0 {
			if p.quorum > 1 {
				oldest := e.now - p.window
				if s.cfat > 0 {
					oldest = min(oldest, s.cfat)
				}
				for i, at := range s.trouble {
					if at != 0 && at < oldest {
						s.trouble[i] = 0
					}
				}
				s.trouble[in.inst] = e.now
			}
			if why := e.tripReason(longest); why != "" {
				e.transition("open", why)
			}
		}
	case s.st == "half_open" && in.lease != 0:
		if b.ko > 0 || b.slow > 0 && p.slowRate > 0 {
			s.ko += b.ko
			s.ok += b.ok
			e.transition("open", "probe_failed")
		} else {
			s.ok += b.ok
			s.hs += b.ok
			if s.hs >= p.successes {
				e.transition("closed", "probes_succeeded")
			}
		}
	default:
		s.ok += b.ok
		s.ko += b.ko
	}
	return e.reply(verdict, 0, ""), true
}

func (e *exec) tripReason(longest int64) string {
	p := e.in.pol
	quorum := func(since int64) bool { return p.quorum <= 1 || e.troubled(since) >= p.quorum }
	if p.consecutive > 0 && longest >= p.consecutive && quorum(e.s.cfat) {
		return "consecutive_failures"
	}
	t := e.sum[0]
	if t > 0 && t >= p.minCalls {
		if p.rate > 0 && float64(e.sum[1])/float64(t) >= p.rate && quorum(e.now-p.window) {
			return "failure_rate"
		}
		if p.slowRate > 0 && float64(e.sum[2])/float64(t) >= p.slowRate && quorum(e.now-p.window) {
			return "slow_call_rate"
		}
	}
	return ""
}

// troubled counts the troubled instances since a time (ZCOUNT since +inf).
func (e *exec) troubled(since int64) int64 {
	n := int64(0)
	for _, at := range e.s.trouble {
		if at != 0 && at >= since {
			n++
		}
	}
	return n
}

// troubledNow is the reply's count of troubled instances in the window,
// kept only with a quorum.
func (e *exec) troubledNow() int64 {
	if e.in.pol.quorum <= 1 {
		return 0
	}
	return e.troubled(e.now - e.in.pol.window)
}

var forceTargets = map[string]string{"open": "forced_open", "close": "closed", "disable": "disabled"}
var forceReasons = map[string]string{"open": "forced_open", "close": "forced_close", "disable": "disabled"}

func (e *exec) force() output {
	in := e.in
	if in.cmd == "reset" {
		old, st := int64(0), "closed"
		if e.s.exists {
			old, st = e.s.gen, e.s.st
		}
		e.fresh(max(e.now, old+1, in.known+1) - 1)
		e.s.st = st
		e.windowOn = true
		e.transition("closed", "reset")
		return e.reply("ok", 0, "")
	}
	e.load(true)
	e.catchUp(in.known)
	to := forceTargets[in.cmd]
	if in.cmd == "open" && in.openFor > 0 {
		trips := e.s.trips
		e.transition("open", "forced_open")
		e.s.probeAt = e.now + in.openFor
		e.s.trips = trips
	} else if e.s.st != to {
		e.transition(to, forceReasons[in.cmd])
	}
	return e.reply("ok", 0, "")
}

func (e *exec) readFull() output {
	e.load(true)
	e.catchUp(e.in.known)
	return e.reply("ok", 0, "")
}

// read is the plain read (store.Read without Full): the state hash as it
// is, decided nothing, as of the clock read in the same round trip.
func (e *exec) read() output {
	s := &e.s
	if !s.exists {
		return output{verdict: "ok", st: "closed", from: "closed", now: e.now}
	}
	o := output{verdict: "ok", st: s.st, gen: s.gen, from: s.from, why: s.why, by: s.by,
		inState: e.now - s.at, ok: s.ok, ko: s.ko, cf: s.cf, hs: s.hs, tok: s.tok, tko: s.tko,
		tslow: s.tslow, tstale: s.tstale, trips: s.trips, pko: s.pko, now: e.now}
	switch s.st {
	case "open":
		o.wait = max(0, s.probeAt-e.now)
	case "forced_open":
		o.wait = -1
	}
	return o
}

// apply runs in on s at Redis's clock now (ms) and returns the state after
// it, what the store answers, and whether the operation wrote anything.
func apply(s state, in *input, now int64) (state, output, bool) {
	e := &exec{s: s, in: in, now: now}
	var out output
	wrote := true
	switch in.kind {
	case opAcquire:
		out = e.acquire()
	case opRecord:
		out, wrote = e.record()
		if !wrote {
			e.s = s // a duplicate leaves even a breaker it would create absent
		}
	case opForce:
		out = e.force()
	case opReadFull:
		out = e.readFull()
	case opRead:
		out = e.read()
		wrote = false
	default:
		panic(fmt.Sprintf("linearizability: unknown op %d", in.kind))
	}
	return e.s, out, wrote
}

// step is the model's step: in may take effect on s when the script's
// clock did not go back and the model answers what the store answered.
func step(s state, in *input, out *output) (bool, state) {
	if in.kind != opRead {
		// Redis runs one script at a time, in the order of its clock. A
		// plain read's clock is read just before its HMGET, in the same
		// round trip but not atomically with it, so it bounds nothing.
		if out.now < s.last {
			return false, s
		}
		s.last = out.now
	}
	next, want, _ := apply(s, in, out.now)
	return want == *out, next
}

// model is the porcupine model of one breaker per partition.
func model() porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			parts := map[int][]porcupine.Operation{}
			var keys []int
			for _, op := range history {
				b := op.Input.(*input).breaker
				if _, ok := parts[b]; !ok {
					keys = append(keys, b)
				}
				parts[b] = append(parts[b], op)
			}
			out := make([][]porcupine.Operation, 0, len(keys))
			for _, k := range keys {
				out = append(out, parts[k])
			}
			return out
		},
		Init: func() interface{} { return state{} },
		Step: func(s, in, out interface{}) (bool, interface{}) {
			return step(s.(state), in.(*input), out.(*output))
		},
		Equal: func(a, b interface{}) bool { return a.(state) == b.(state) },
		Hash: func(v interface{}) uint64 {
			s := v.(state)
			h := fnv.New64a()
			var buf [8]byte
			for _, x := range []int64{s.gen, s.tok, s.tko, s.tstale, s.ok, s.ko, s.cf, s.hs, s.last} {
				binary.LittleEndian.PutUint64(buf[:], uint64(x))
				_, _ = h.Write(buf[:])
			}
			for _, x := range s.seq {
				binary.LittleEndian.PutUint64(buf[:], uint64(x))
				_, _ = h.Write(buf[:])
			}
			_, _ = h.Write([]byte(s.st))
			return h.Sum64()
		},
		DescribeOperation: func(in, out interface{}) string {
			return describe(in.(*input), out.(*output))
		},
		DescribeState: func(v interface{}) string {
			s := v.(state)
			if !s.exists {
				return "absent"
			}
			return fmt.Sprintf("%s gen %d fl %d ok %d ko %d cf %d hs %d tok %d tko %d stale %d trips %d probe_at %d leases %v last %d",
				s.st, s.gen, s.fl, s.ok, s.ko, s.cf, s.hs, s.tok, s.tko, s.tstale, s.trips, s.probeAt, s.leases, s.last)
		},
	}
}

func describe(in *input, out *output) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", instName(in.inst), in.kind)
	switch in.kind {
	case opRecord:
		fmt.Fprintf(&b, " seq %d gen %d %+v", in.seq, in.gen, in.batch)
		if in.lease != 0 {
			fmt.Fprintf(&b, " lease %s", leaseName(in.lease))
		}
	case opForce:
		fmt.Fprintf(&b, " %s %dms", in.cmd, in.openFor)
	}
	if in.known != 0 {
		fmt.Fprintf(&b, " known %d", in.known)
	}
	fmt.Fprintf(&b, " -> %s %s gen %d tok %d tko %d stale %d at %d", out.verdict, out.st, out.gen,
		out.tok, out.tko, out.tstale, out.now)
	return b.String()
}

func instName(i int) string { return fmt.Sprintf("inst-%02d", i) }
