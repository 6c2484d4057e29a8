package linearizability

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"
)

// The model: a breaker's shared state as the scripts of lua/ keep it, and a
// step for each operation that mirrors the script (or the plain read) that
// carries it out. Every step takes Redis's clock (in µs) from the
// operation's output, so that what depends on time (an open breaker
// half-opens once its open time is over, probe leases expire, window
// buckets slide, failures settle and successes end the runs of failures
// that happened before them) is decided as the script decided it. Steps are
// pure: they take a state and return a new one.
//
// A record takes the fast script (lua/fast.lua) when the stored state and
// the request allow it, and the model decides that exactly as the store and
// fast.lua do, from the state and the request alone (not from time): the
// store then answers in short (verdict, state, generation) and without its
// clock, so that such an operation bounds no clock (see step). fast.lua's
// door, field fk, is not in the model's state: every full script sets it
// from the state it saves, so the model derives it from that state. The
// idle expiry of the keys (field ren, and the renewal an instance asks for)
// is not in the model: it shows in no reply, and a run is far shorter than
// the expiry; whether the store asked for a renewal (ARGV[33] of the full
// script) decides whether it sent the fast script, and the model takes it
// from the request.

const (
	// instances is how many instances share each breaker.
	instances = 16
	// maxLeases bounds the live probe leases of a breaker (the largest
	// MaxProbes of the policies).
	maxLeases = 2
	// buckets is the WindowBuckets of every policy.
	buckets = 4
	// maxRun is how many entries record.lua keeps of the current run of
	// failures; it merges the oldest ones beyond.
	maxRun = 32
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
	// settle is how late the batches may arrive (µs; the flush interval,
	// 0 for outcomes reported one by one), -1 when each instance has its
	// own; the scripts get it with each batch.
	settle int64
}

// batch is a record's outcomes (backend.Batch, its times in µs).
type batch struct {
	ok, ko, slow, lead, trail, run int64
	// okAge is how long ago the last success happened, koAge the first of
	// the trailing failures (of all failures when there is no success),
	// and settle how late the batch may arrive after its outcomes.
	okAge, koAge, settle int64
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
	through int64  // record: Redis's time (µs) through which failures settled (0: none)
	renew   bool   // record: the store asked the script to renew the keys' expiry (ARGV[33])
	cmd     string // force: open, close, disable, reset
	openFor int64  // force open: ms
	random  float64
}

// output is what the store answered: backend.Reply in ms, with Redis's clock.
type output struct {
	verdict, st, from, why, by, lease string
	gen, wait, inState                int64
	ok, ko, cf, hs                    int64
	wt, wf, ws, troubled              int64
	tok, tko, tslow, tstale           int64
	trips, pko                        int64
	changed                           bool
	now                               int64 // Redis's clock (ms)
	nowUs                             int64 // Redis's clock (µs)
	// short marks the store's short answer (lua/fast.lua counted): only
	// verdict, st and gen are given, and no clock (now and nowUs are 0).
	short bool
}

type lease struct{ id, exp int64 } // id 0: none

type bucket struct{ i, t, f, s int64 }

// entry is one entry of the current run of failures (record.lua's rl):
// when the failures began (Redis µs) and how many.
type entry struct{ at, n int64 }

// Who made the current run (record.lua's ri): riNone, riSeveral, or an
// instance's index plus one.
const (
	riNone    = 0
	riSeveral = -1
)

// state is a breaker's keys: the state hash (with the instances' last
// sequences), the probe leases and the window; and the clock of the last
// script the model applied.
type state struct {
	exists                                  bool
	st, from, why, by                       string
	gen, fl, probeAt, trips, at             int64
	ok, ko, cf, hs, tok, tko, tslow, tstale int64
	pko                                     int64
	cfat                                    int64
	run                                     [maxRun]entry // the current run of failures, sorted by (at, n)
	rn                                      int           // its length
	ri                                      int           // who made it
	leases                                  [maxLeases]lease
	trouble                                 [instances]int64 // troubled instances: time of the last failure or slow call (0: none)
	win                                     [buckets]bucket
	seq                                     [instances]int64
	tl                                      [instances]int64 // t.<instance>: the time of its latest entry in the run
	last                                    int64            // Redis's clock of the last script (µs)
}

// runEntries returns a copy of the current run.
func (s *state) runEntries() []entry { return append([]entry(nil), s.run[:s.rn]...) }

// setRun stores run, at most maxRun entries, in the canonical order:
// record.lua sorts by time alone, and entries of the same time count
// alike whatever their order.
func (s *state) setRun(run []entry) {
	sortRun(run)
	s.run = [maxRun]entry{}
	s.rn = copy(s.run[:], run)
	if s.rn != len(run) {
		panic("linearizability: a run longer than maxRun")
	}
}

func sortRun(run []entry) {
	sort.Slice(run, func(i, j int) bool {
		if run[i].at != run[j].at {
			return run[i].at < run[j].at
		}
		return run[i].n < run[j].n
	})
}

// riName is who made the run, as record.lua writes it.
func riName(ri int) string {
	switch ri {
	case riNone:
		return ""
	case riSeveral:
		return "*"
	}
	return instName(ri - 1)
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
	now      int64 // ms
	nowUs    int64
	hits     hits // what this run exercised, for the coverage report
	short    bool // the store answered in short: the fast script counted
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
	s.ok, s.ko, s.cf, s.hs, s.probeAt, s.cfat = 0, 0, 0, 0, 0, 0
	s.run, s.rn, s.ri = [maxRun]entry{}, 0, riNone
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
		tstale: s.tstale, lease: lease, changed: e.changed, trips: s.trips, pko: s.pko, now: e.now,
		nowUs: e.nowUs}
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

// fast reports whether lua/fast.lua counts in on s. The store sends it a
// batch of successes only, admitted under the generation the instance
// knows, with no lease, for a policy with no rate and no quorum, when it
// asks for no renewal of the keys' expiry; the script counts it when the
// door (field fk, which every full script sets to the generation while the
// breaker is closed with no failure counted or outstanding) is that
// generation and the sequence is new.
func fast(s *state, in *input) bool {
	p, b := in.pol, in.batch
	return in.kind == opRecord && p.rate == 0 && p.slowRate == 0 && max(1, p.quorum) == 1 &&
		in.lease == 0 && b.ko == 0 && b.slow == 0 && b.lead == 0 && b.trail == 0 && b.run == 0 && b.ok > 0 &&
		!in.renew && in.known > 0 && in.gen == in.known && in.seq > 0 &&
		s.exists && s.st == "closed" && s.gen == in.known && s.cf == 0 && s.rn == 0 &&
		in.seq > s.seq[in.inst]
}

// fastRecord is lua/fast.lua's write and short answer.
func (e *exec) fastRecord() output {
	in, s := e.in, &e.s
	s.ok += in.batch.ok
	s.tok += in.batch.ok
	s.seq[in.inst] = in.seq
	e.hit(hitFast)
	return output{verdict: "counted", st: "closed", gen: s.gen, short: true}
}

func (e *exec) record() (output, bool) {
	if e.short {
		if fast(&e.s, e.in) {
			return e.fastRecord(), true
		}
		return output{verdict: "no short answer here"}, false
	}
	// A full answer: the full script counted, alone or after the fast
	// script found its door shut at an earlier point (a read that changed
	// nothing), so the model does not ask whether the door is open now.
	if e.in.renew {
		r := *e.in
		r.renew = false
		if fast(&e.s, &r) {
			e.hit(hitRenew)
		}
	}
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
		// a lease release, a request to catch up, or a look at failures
		// that settled since they were reported
		if s.st == "closed" && p.consecutive > 0 && s.rn > 0 && (in.gen == 0 || in.gen >= s.fl) {
			e.hit(hitLook)
			r := e.newRun()
			longest := r.settle()
			e.noteSettle(r)
			e.save(r)
			if why := e.tripReason(longest); why == "consecutive_failures" {
				e.hitTrip(r, hitTripLook)
				e.transition("open", why)
			}
		}
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
		longest, r := e.closedRun()
		if p.consecutive > 0 && longest >= p.consecutive && b.ko == 0 {
			// failures that settled since the last batch trip the breaker now
			if why := e.tripReason(longest); why != "" {
				if why == "consecutive_failures" {
					e.hitTrip(r, hitTripSettled)
				}
				e.transition("open", why)
			}
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
			if s.st == "closed" {
				if why := e.tripReason(longest); why != "" {
					if why == "consecutive_failures" {
						e.hitTrip(r, 0)
					}
					e.transition("open", why)
				}
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

// streak is the current run of failures while record.lua works on it:
// entries in time order, an entry of no failures being a success that
// ends the failures before it (a closed run, kept until it settles).
type streak struct {
	entries   []entry
	ri        int   // who made the open run, the failures after the last success
	inst      int   // the asking instance's ri
	settledAt int64 // µs: failures up to this time have settled
	// the entry of the batch's failures before its first success, which
	// that success follows: counted as settled
	leadSet       bool
	leadAt, leadN int64
	// what settle saw, for the coverage report
	longest, closed int64   // the longest run counted, and the longest closed one
	cut             bool    // a settled success dropped the runs before it
	pre             []entry // the entries before settle
}

// newRun loads the state's run for the asking request.
func (e *exec) newRun() *streak {
	b := e.in.batch
	return &streak{entries: e.s.runEntries(), ri: e.s.ri, inst: e.in.inst + 1,
		settledAt: max(e.nowUs-b.settle, e.in.through)}
}

// total counts the failures of entries.
func total(entries []entry) int64 {
	n := int64(0)
	for _, x := range entries {
		n += x.n
	}
	return n
}

func (r *streak) failures() bool {
	for _, x := range r.entries {
		if x.n > 0 {
			return true
		}
	}
	return false
}

// add is run_add.
func (r *streak) add(at, n int64) {
	r.entries = append(r.entries, entry{at, n})
	switch r.ri {
	case riNone:
		r.ri = r.inst
	case r.inst:
	default:
		r.ri = riSeveral
	}
}

// end is run_end: a success; after every entry, it leaves no open run.
func (r *streak) end(at int64) {
	last := true
	for _, x := range r.entries {
		if x.at > at || x.at == at && x.n > 0 {
			last = false
		}
	}
	r.entries = append(r.entries, entry{at, 0})
	if last {
		r.ri = riNone
	}
}

// settle is run_settle: it sorts the run and returns the longest run of
// failures known to be consecutive (settled failures, all of the open run
// when one instance made it, and the batch's failures before its first
// success), and drops the closed runs before a settled success.
func (r *streak) settle() int64 {
	sortRun(r.entries)
	r.pre = append([]entry(nil), r.entries...)
	open := -1
	for i, x := range r.entries {
		if x.n == 0 {
			open = i
		}
	}
	one := r.ri != riNone && r.ri != riSeveral
	leadSeen := !r.leadSet
	longest, n, cut := int64(0), int64(0), 0
	for i, x := range r.entries {
		if x.n == 0 {
			longest = max(longest, n)
			r.closed = max(r.closed, n)
			n = 0
			if x.at <= r.settledAt {
				cut = i + 1
			}
			continue
		}
		lead := false
		if !leadSeen && x.at == r.leadAt && x.n == r.leadN {
			lead, leadSeen = true, true
		}
		if x.at <= r.settledAt || lead || one && i > open {
			n += x.n
		}
	}
	longest = max(longest, n)
	r.entries = append([]entry(nil), r.entries[cut:]...)
	r.longest, r.cut = longest, cut > 0
	return longest
}

// save is run_save: it keeps maxRun entries at most (merging the oldest
// two adjacent failures, else forgetting the oldest closed run), forgets
// successes with no failure left, and stores the run and the open run's
// length.
func (e *exec) save(r *streak) {
	s := &e.s
	for len(r.entries) > maxRun {
		e.hit(hitMerge)
		merged := false
		for i := 0; i+1 < len(r.entries); i++ {
			if r.entries[i].n > 0 && r.entries[i+1].n > 0 {
				r.entries[i].n += r.entries[i+1].n
				r.entries = append(r.entries[:i+1], r.entries[i+2:]...)
				merged = true
				break
			}
		}
		if !merged {
			for r.entries[0].n > 0 {
				r.entries = r.entries[1:]
			}
			r.entries = r.entries[1:]
		}
	}
	cf := int64(0)
	for _, x := range r.entries {
		if x.n == 0 {
			cf = 0
		} else {
			cf += x.n
		}
	}
	if !r.failures() {
		r.entries, r.ri = nil, riNone
	}
	if cf > 0 && s.cf == 0 {
		s.cfat = e.now
	}
	if cf == 0 && s.cf > 0 {
		s.cfat = 0
	}
	s.cf = cf
	s.setRun(r.entries)
	s.ri = r.ri
}

// closedRun counts a batch into the run of failures in the closed state,
// ordered by when its outcomes happened, and returns the longest run to
// trip on.
func (e *exec) closedRun() (int64, *streak) {
	s, b := &e.s, e.in.batch
	r := e.newRun()
	okAt, koAt := max(0, e.nowUs-b.okAge), max(0, e.nowUs-b.koAge)
	if r.settledAt > e.nowUs-b.settle {
		e.hit(hitThrough)
	}
	if b.settle == 0 {
		e.hit(hitSettle0)
	} else {
		e.hit(hitSettle)
	}
	longest := b.run
	// an instance's batches are not put before its earlier entries
	floor := min(s.tl[e.in.inst], e.nowUs)
	last := int64(-1)
	if b.ok > 0 {
		if b.lead > 0 {
			okAt = max(okAt, floor+2)
		} else {
			okAt = max(okAt, floor+1)
		}
		if b.lead > 0 {
			at := okAt - 1
			r.add(at, b.lead)
			r.leadSet, r.leadAt, r.leadN = true, at, b.lead
		}
		older := false // a failure older than the success
		for _, x := range r.entries {
			if x.n > 0 && x.at < okAt {
				older = true
			}
		}
		if r.failures() && !older {
			e.hit(hitDropNone)
		}
		r.end(okAt)
		last = okAt
		if b.trail > 0 {
			koAt = max(koAt, okAt)
			r.add(koAt, b.trail)
			last = koAt
		}
	} else if b.ko > 0 {
		koAt = max(koAt, floor)
		r.add(koAt, b.ko)
		last = koAt
	}
	longest = max(longest, r.settle())
	e.noteSettle(r)
	e.save(r)
	if last >= 0 && s.rn > 0 && last != floor {
		s.tl[e.in.inst] = last
	}
	return longest, r
}

// noteSettle notes what settling the run did, for the coverage report
// (r.pre: the run before it).
func (e *exec) noteSettle(r *streak) {
	c := e.in.pol.consecutive
	if r.cut {
		if r.failures() {
			e.hit(hitDropSome)
		} else {
			e.hit(hitDropAll)
		}
	}
	for _, x := range r.entries {
		if x.n == 0 && x.at > r.settledAt {
			for _, y := range r.entries {
				if y.n > 0 && y.at < x.at {
					e.hit(hitEnded) // a success kept the run it ended until it settles
				}
			}
		}
	}
	if r.ri == riSeveral && total(r.pre) >= c && c > 0 && r.longest < c {
		e.hit(hitUnsettled) // enough failures, not all of them settled yet
	}
}

// hits are what a script's run exercised, for the coverage report.
type hits uint64

const (
	hitSettle0     hits = 1 << iota // a batch reported one by one (settle 0) counted in the closed state
	hitSettle                       // a batch with a settling time counted in the closed state
	hitThrough                      // SettledThrough settled more than the batch's settling time did
	hitDropNone                     // a success older than every failure of the run
	hitDropSome                     // a success that ended part of the run (the failures before it)
	hitDropAll                      // a success that ended the whole run
	hitEnded                        // a success that ended a run of several instances before it settled
	hitUnsettled                    // a run of several instances long enough, not settled enough to trip
	hitMerge                        // the run's oldest entries merged
	hitLook                         // an empty batch looked at the run
	hitTripOne                      // a consecutive-failures trip on a run one instance made alone
	hitTripSeveral                  // ... on a run of several instances
	hitTripThrough                  // ... that SettledThrough made
	hitTripLook                     // ... by an empty batch (failures that settled since)
	hitTripSettled                  // ... by a batch without failures
	hitTripClosed                   // ... on a run a success had ended, once it settled
	hitFast                         // a batch counted by the fast path (lua/fast.lua)
	hitRenew                        // a batch the fast path would have counted, but for a renewal asked
)

// sharedHits are those the instances' random operations on the shared
// breakers come to in every run (the scenarios come to all of them).
const sharedHits = hitSettle0 | hitSettle | hitThrough | hitDropNone | hitDropSome | hitDropAll |
	hitUnsettled | hitMerge | hitLook | hitTripOne | hitTripSeveral | hitTripLook | hitFast | hitRenew

var hitNames = [...]string{"settle 0", "settle > 0", "settled through", "success older than the run",
	"settled success dropped part of the run", "settled success dropped the run",
	"success kept the unsettled run it ended",
	"unsettled run", "run entries merged", "empty batch looked", "trip: one instance's run",
	"trip: several instances' run", "trip: settled through", "trip: empty batch",
	"trip: batch without failures", "trip: a run a success had ended", "fast path", "full script for a renewal"}

func (e *exec) hit(h hits) { e.hits |= h }

// hitTrip notes a consecutive-failures trip on the run r as settle left
// it.
func (e *exec) hitTrip(r *streak, h hits) {
	e.hit(h)
	c := e.in.pol.consecutive
	if r.closed >= c {
		e.hit(hitTripClosed)
	}
	switch r.ri {
	case riNone:
	case riSeveral:
		e.hit(hitTripSeveral)
		b := *r
		b.entries = append([]entry(nil), r.pre...)
		b.settledAt = e.nowUs - e.in.batch.settle
		if b.settle() < c && r.longest >= c {
			e.hit(hitTripThrough)
		}
	default:
		e.hit(hitTripOne)
	}
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
		return output{verdict: "ok", st: "closed", from: "closed", now: e.now, nowUs: e.nowUs}
	}
	o := output{verdict: "ok", st: s.st, gen: s.gen, from: s.from, why: s.why, by: s.by,
		inState: e.now - s.at, ok: s.ok, ko: s.ko, cf: s.cf, hs: s.hs, tok: s.tok, tko: s.tko,
		tslow: s.tslow, tstale: s.tstale, trips: s.trips, pko: s.pko, now: e.now, nowUs: e.nowUs}
	switch s.st {
	case "open":
		o.wait = max(0, s.probeAt-e.now)
	case "forced_open":
		o.wait = -1
	}
	return o
}

// apply runs in on s at Redis's clock nowUs (µs) and returns the state
// after it, what the store answers, and whether the operation wrote
// anything; short tells a record the fast script counted from one the full
// script did.
func apply(s state, in *input, nowUs int64, short bool) (state, output, bool) {
	next, out, wrote, _ := trace(s, in, nowUs, short)
	return next, out, wrote
}

// trace is apply, and tells what the operation exercised.
func trace(s state, in *input, nowUs int64, short bool) (state, output, bool, hits) {
	e := &exec{s: s, in: in, now: nowUs / 1000, nowUs: nowUs, short: short}
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
	return e.s, out, wrote, e.hits
}

// step is the model's step: in may take effect on s when the script's
// clock did not go back and the model answers what the store answered.
func step(s state, in *input, out *output) (bool, state) {
	if in.kind != opRead && !out.short {
		// Redis runs one script at a time, in the order of its clock. A
		// plain read's clock is read just before its HMGET, in the same
		// round trip but not atomically with it, so it bounds nothing; nor
		// does a short answer, which carries no clock (the fast path it
		// comes from reads no clock either).
		if out.nowUs < s.last {
			return false, s
		}
		s.last = out.nowUs
	}
	next, want, _ := apply(s, in, out.nowUs, out.short)
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
			for _, x := range []int64{s.gen, s.tok, s.tko, s.tstale, s.ok, s.ko, s.cf, s.hs, s.last, int64(s.rn)} {
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
			return fmt.Sprintf("%s gen %d fl %d ok %d ko %d cf %d run %v by %q hs %d tok %d tko %d stale %d trips %d probe_at %d leases %v last %d",
				s.st, s.gen, s.fl, s.ok, s.ko, s.cf, s.run[:s.rn], riName(s.ri), s.hs, s.tok, s.tko, s.tstale, s.trips,
				s.probeAt, s.leases, s.last)
		},
	}
}

func describe(in *input, out *output) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", instName(in.inst), in.kind)
	switch in.kind {
	case opRecord:
		fmt.Fprintf(&b, " seq %d gen %d %+v", in.seq, in.gen, in.batch)
		if in.through != 0 {
			fmt.Fprintf(&b, " through %d", in.through)
		}
		if in.lease != 0 {
			fmt.Fprintf(&b, " lease %s", leaseName(in.lease))
		}
	case opForce:
		fmt.Fprintf(&b, " %s %dms", in.cmd, in.openFor)
	}
	if in.known != 0 {
		fmt.Fprintf(&b, " known %d", in.known)
	}
	if in.renew {
		b.WriteString(" renew")
	}
	if out.short {
		fmt.Fprintf(&b, " -> %s %s gen %d (short)", out.verdict, out.st, out.gen)
		return b.String()
	}
	fmt.Fprintf(&b, " -> %s %s gen %d cf %d tok %d tko %d stale %d at %dµs", out.verdict, out.st, out.gen,
		out.cf, out.tok, out.tko, out.tstale, out.nowUs)
	return b.String()
}

func instName(i int) string { return fmt.Sprintf("inst-%02d", i) }
