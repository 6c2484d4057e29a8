package breaker

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/breakwater-go/breakwater/breaker/backend"
)

// Outcome reporting. Outcomes of closed-state calls are counted in a cell
// per generation: one atomic word of counts that callers add to with a
// compare-and-swap, without a lock and without allocating. Failures also
// keep, under the breaker's lock, where they fell between successes, which
// the consecutive-failures policy needs. The breaker's hub drains the cell
// into a batch and reports it with one store call; a batch carries a
// sequence number, so the store counts it once however often it is sent.

const (
	fieldBits = 21
	fieldMax  = 1<<fieldBits - 1
	okShift   = 0
	koShift   = fieldBits
	slowShift = 2 * fieldBits
	sealedBit = uint64(1) << 63
	// maxBatch bounds Settings.MaxBatch, well below what a cell holds.
	maxBatch = 1 << 20
)

func unpack(w uint64) (ok, ko, slow uint64) {
	return w >> okShift & fieldMax, w >> koShift & fieldMax, w >> slowShift & fieldMax
}

// cell counts the outcomes of one generation since the last drain.
type cell struct {
	gen  int64
	w    atomic.Uint64 // sealed | slow | failures | successes
	okAt atomic.Int64  // when the last success was counted (monotonic ns, see since)
	// when the first outcome since the last drain was counted (see since;
	// 0: none, or not known)
	firstAt atomic.Int64
	// Guarded by the breaker's mu.
	lead, trail, run uint64        // as in backend.Batch, for the failures in w
	lastOK           uint64        // successes in w at the last failure
	trailAt          int64         // when the trailing failures began (see since)
	spill            backend.Batch // outcomes moved out of w when a field was full
	fed              uint64        // outcomes in w and spill already given to the fallback one by one
}

// add counts one outcome into c unless c is sealed or full; it returns the
// outcomes c now holds. Failures are added by addFailure.
func (c *cell) addSuccess(slow bool) (n uint64, ok bool) {
	inc := uint64(1) << okShift
	if slow {
		inc |= uint64(1) << slowShift
	}
	for {
		w := c.w.Load()
		o, k, s := unpack(w)
		if w&sealedBit != 0 || o == fieldMax || slow && s == fieldMax {
			return 0, false
		}
		if c.w.CompareAndSwap(w, w+inc) {
			now := since()
			c.okAt.Store(now)
			if o+k == 0 {
				c.firstAt.Store(now)
			}
			return o + k + 1, true
		}
	}
}

// epoch anchors since: a monotonic reading of the local clock.
var epoch = time.Now()

// since returns the monotonic time since epoch, in ns.
func since() int64 { return int64(time.Since(epoch)) }

// addFailure counts a failure; the caller holds the breaker's mu.
func (c *cell) addFailure(slow bool) (n uint64, ok bool) {
	inc := uint64(1) << koShift
	if slow {
		inc |= uint64(1) << slowShift
	}
	for {
		w := c.w.Load()
		o, k, s := unpack(w)
		if w&sealedBit != 0 || k == fieldMax || slow && s == fieldMax {
			return 0, false
		}
		if !c.w.CompareAndSwap(w, w+inc) {
			continue
		}
		switch {
		case o == 0:
			c.lead++
			c.trail++
		case o == c.lastOK && c.trail > 0:
			c.trail++
		default:
			if c.lastOK > 0 {
				c.run = max(c.run, c.trail)
			}
			c.trail = 1
		}
		if c.trail == 1 || o+k == 0 {
			now := since()
			if c.trail == 1 {
				c.trailAt = now
			}
			if o+k == 0 {
				c.firstAt.Store(now)
			}
		}
		c.lastOK = o
		return o + k + 1, true
	}
}

// take empties c (sealing it when seal is set) and returns what it held,
// spill first; the caller holds the breaker's mu.
func (c *cell) take(seal bool) backend.Batch {
	var w uint64
	for {
		w = c.w.Load()
		next := uint64(0)
		if seal {
			next = sealedBit
		}
		if c.w.CompareAndSwap(w, next) {
			break
		}
	}
	o, k, s := unpack(w)
	now := time.Now()
	at := int64(now.Sub(epoch)) // since(), as of now
	b := backend.Batch{Successes: o, Failures: k, Slow: s, Measured: now}
	first := c.firstAt.Swap(0)
	if o > 0 {
		b.SuccessAge = time.Duration(max(0, at-c.okAt.Load()))
	}
	if k > 0 {
		trail, run := c.trail, c.run
		if o > c.lastOK {
			if c.lastOK > 0 {
				run = max(run, trail)
			}
			trail = 0
		}
		b.Lead, b.Trail, b.Run = c.lead, trail, run
		if trail > 0 {
			b.FailureAge = time.Duration(max(0, at-c.trailAt))
		}
	}
	if o+k > 0 {
		b.OldestAge = max(b.SuccessAge, b.FailureAge)
		if first > 0 && first <= at {
			b.OldestAge = time.Duration(at - first)
		}
	}
	c.lead, c.trail, c.run, c.lastOK = 0, 0, 0, 0
	out := c.spill
	c.spill = backend.Batch{}
	out.Append(b)
	return out
}

// flush is one batch on its way to the store, with the callers waiting
// for it (ReportSync and probes).
type flush struct {
	gen     int64
	seq     int64
	lease   string
	batch   backend.Batch
	waiters []chan struct{}
	failed  bool      // a delivery failed; counted in the breaker's unreported
	timed   bool      // sent when due, for nothing but its flush wait
	jumps   int       // times it went on above a sequence the store held (see answer)
	through time.Time // the store's time through which failures settled
	// a look to make again, again after the answer: the process got later
	// since the look was planned, and through claims only what settled
	again      time.Time
	againAfter time.Duration
}

// pendingGen holds outcomes of a generation that is no longer the view's.
type pendingGen struct {
	gen   int64
	batch backend.Batch
}

// maxOldGens bounds the generations whose outcomes wait apart; beyond it the
// oldest merge (they are stale alike).
const maxOldGens = 8

// record counts an outcome of a call admitted under gen and reports
// whether the breaker should flush now rather than at its interval. fed
// says that the outcome was given to the fallback one by one already.
func (b *Breaker) record(gen int64, o Outcome, slow bool, fed bool) (urgent, first bool) {
	if o == Success && !fed {
		c := b.cell.Load()
		if c.gen == gen {
			if n, ok := c.addSuccess(slow); ok {
				return n >= uint64(b.s.MaxBatch), n == 1
			}
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.cell.Load()
	if c.gen == gen {
		var n uint64
		var ok bool
		if o == Success {
			n, ok = c.addSuccess(slow)
		} else {
			n, ok = c.addFailure(slow)
		}
		if !ok { // full: move the cell's counts aside and count into it anew
			c.spill.Append(c.take(false))
			if o == Success {
				n, _ = c.addSuccess(slow)
			} else {
				n, _ = c.addFailure(slow)
			}
		}
		if fed {
			c.fed++
		}
		// A failure may trip the breaker at once (a run this instance made
		// alone): report it now, and let the caller see the answer.
		return o == Failure && b.s.ConsecutiveFailures != Off && b.view().state == Closed ||
			n >= uint64(b.s.MaxBatch), n == 1
	}
	// An outcome of another generation waits apart, to be reported with it.
	var one backend.Batch
	one.Add(o == Failure, slow)
	b.addOld(gen, one)
	return true, false
}

// firstDue is when the outcomes waiting in b's cell are due: a flush wait
// after the first of them (now, when none waits).
func (b *Breaker) firstDue() time.Time {
	at := time.Now()
	if f := b.cell.Load().firstAt.Load(); f > 0 {
		at = epoch.Add(time.Duration(f))
	}
	return at.Add(b.flushWait())
}

// flushWait is how long an outcome waits for its batch's report: a margin
// less than the flush interval, so that the batch arrives within it (the
// store lets failures settle for that long).
func (b *Breaker) flushWait() time.Duration {
	return max(b.s.FlushInterval-settleMargin, b.s.FlushInterval/2)
}

// addOld keeps batch for gen; the caller holds mu.
func (b *Breaker) addOld(gen int64, batch backend.Batch) {
	if batch.Len() == 0 {
		return
	}
	for i := range b.old {
		if b.old[i].gen == gen {
			b.old[i].batch.Append(batch)
			return
		}
	}
	if len(b.old) >= maxOldGens {
		// Merge into the oldest: both ended before the view's generation.
		b.old[0].gen = min(b.old[0].gen, gen)
		b.old[0].batch.Append(batch)
		return
	}
	b.old = append(b.old, pendingGen{gen: gen, batch: batch})
}

// nextFlush returns the batch to send now, or nil when nothing waits: the
// batch in flight again (its answer was lost), a probe's result, outcomes
// of ended generations, then the current cell. The caller holds mu.
func (b *Breaker) nextFlush(now time.Time) *flush {
	if b.inflight != nil {
		return b.inflight
	}
	var f *flush
	settle := b.settle()
	switch {
	case len(b.probes) > 0:
		f = b.probes[0]
		b.probes = b.probes[1:]
	case len(b.old) > 0:
		f = &flush{gen: b.old[0].gen, batch: b.old[0].batch}
		b.old = b.old[1:]
	default:
		c := b.cell.Load()
		batch := c.take(false)
		// asked: something wants a report now, whatever the batch holds
		asked := b.catchUp || len(b.waiters) > 0 || b.lookDue(now)
		timed := !asked && !b.settleNow && batch.Failures == 0 && batch.Len() > 0 && batch.Len() < uint64(b.s.MaxBatch)
		b.settleNow = false // (what the store asked for goes now)
		if batch.Len() == 0 && !asked {
			return nil
		}
		f = &flush{gen: c.gen, batch: batch, timed: timed}
		b.feedFallback(batch, c.fed)
		c.fed = 0
		// A planned look goes with a report of the view's generation only
		// (one of an ended generation is stale, and its answer moot).
		if l, ok := b.takeLook(now); ok {
			f.through = l.through
			if d := settle - l.with; d > 0 {
				f.through = l.through.Add(-d)
				f.again, f.againAfter = l.through, d
			}
		}
	}
	if len(f.waiters) == 0 && f.lease == "" {
		f.waiters, b.waiters = b.waiters, nil
	}
	f.batch.Settle = settle
	b.catchUp = false
	f.seq = nextSeq(now)
	b.inflight = f
	return f
}

// look is a planned look at the failures that settled through the store's
// time through, due when they have (local time), reckoned with the
// settling time with: a report that says so to the store (it may trip the
// breaker then, with no other outcome to bring them up).
type look struct {
	through, due time.Time
	with         time.Duration
}

// maxLooks bounds the looks a breaker plans; beyond it the two due last
// merge into one, due when both are.
const maxLooks = 4

// planLook adds l to b's looks, unless one of them says as much as soon,
// and drops those it says as much as, sooner; the caller holds mu.
func (b *Breaker) planLook(l look) {
	for _, k := range b.looks {
		if !k.through.Before(l.through) && !k.due.After(l.due) {
			return
		}
	}
	kept := b.looks[:0]
	for _, k := range b.looks {
		if !k.through.After(l.through) && !k.due.Before(l.due) {
			continue
		}
		kept = append(kept, k)
	}
	b.looks = append(kept, l)
	if len(b.looks) > maxLooks {
		sort.Slice(b.looks, func(i, j int) bool { return b.looks[i].due.Before(b.looks[j].due) })
		n := len(b.looks)
		last, prev := b.looks[n-1], b.looks[n-2]
		if prev.through.After(last.through) {
			last.through, last.with = prev.through, prev.with
		}
		b.looks = append(b.looks[:n-2], last)
	}
}

// lookDue reports whether a look is due at now; the caller holds mu.
func (b *Breaker) lookDue(now time.Time) bool {
	for _, l := range b.looks {
		if !now.Before(l.due) {
			return true
		}
	}
	return false
}

// takeLook returns the look due at now that says the most, and drops the
// looks it says as much as; the caller holds mu.
func (b *Breaker) takeLook(now time.Time) (look, bool) {
	var best look
	found := false
	for _, l := range b.looks {
		if !now.Before(l.due) && (!found || l.through.After(best.through)) {
			best, found = l, true
		}
	}
	if !found {
		return look{}, false
	}
	kept := b.looks[:0]
	for _, l := range b.looks {
		if l.through.After(best.through) {
			kept = append(kept, l)
		}
	}
	b.looks = kept
	return best, true
}

// nextLook returns when b's next planned look is due (zero: none); the
// caller holds mu.
func (b *Breaker) nextLook() time.Time {
	var next time.Time
	for _, l := range b.looks {
		if next.IsZero() || l.due.Before(next) {
			next = l.due
		}
	}
	return next
}

// settle is how late a batch of b may arrive after its outcomes: a flush
// interval (a batch is sent a margin before its interval ends), and longer
// while this process delivers batches later than their interval (a loaded
// machine, a pause): by the most any batch of the process was late
// lately (lateBy), up to maxSettle intervals. Lateness is the process's,
// not the breaker's: the breakers of a process share its CPU, and a batch
// of one that arrives late reorders the outcomes of all. 0 when outcomes
// are reported one by one.
func (b *Breaker) settle() time.Duration {
	if b.s.Reporting == ReportSync {
		return 0
	}
	return b.s.FlushInterval + min(lateness.recent(time.Now()), (maxSettle-1)*b.s.FlushInterval)
}

// lateness is how much later than their flush interval this process's
// batches were delivered lately.
var lateness lateBy

// lateBy keeps the largest excess of the last lateMemory: the largest of
// the current period of half of it and of the period before (so, of the
// last lateMemory/2 at least). A large excess that ages out leaves the
// smaller ones that came after it.
type lateBy struct {
	mu        sync.Mutex
	start     time.Time     // when the current period began
	cur, prev time.Duration // the largest excess of the current period and of the one before
	// the excesses of the last lateSamples batches sent when due (see
	// timed), and when they were delivered, for usual
	ring [lateSamples]lateSample
	n    int
}

// lateSample is the excess of one timed batch, delivered at at.
type lateSample struct {
	excess time.Duration
	at     time.Time
}

// roll moves l to the period that holds now; the caller holds mu.
func (l *lateBy) roll(now time.Time) {
	const period = lateMemory / 2
	switch d := now.Sub(l.start); {
	case d >= 2*period:
		l.start, l.cur, l.prev = now, 0, 0
	case d >= period:
		l.start, l.cur, l.prev = l.start.Add(period), 0, l.cur
	}
}

// delivered notes that a batch was delivered age after its first outcome,
// with the flush interval its breaker waits.
func (l *lateBy) delivered(age, interval time.Duration, now time.Time) {
	l.mu.Lock()
	l.roll(now)
	l.cur = max(l.cur, age-interval)
	l.mu.Unlock()
}

// timed notes the excess of a batch that was sent when due (not at once,
// for a failure or a call of the store): how much later than its flush
// wait it was delivered, its round trip included.
func (l *lateBy) timed(age, wait time.Duration, now time.Time) {
	if age < wait {
		return // sent sooner after all (a Flush, a Close)
	}
	l.mu.Lock()
	l.ring[l.n%lateSamples] = lateSample{excess: age - wait, at: now}
	l.n++
	l.mu.Unlock()
}

// usual returns the excess that 9 in 10 of the last lateSamples timed
// batches of the last usualMemory kept within (0 when none was late, or
// none was delivered lately): how long a report that is due usually
// takes to arrive.
func (l *lateBy) usual(now time.Time) time.Duration {
	l.mu.Lock()
	xs := make([]time.Duration, 0, lateSamples)
	for i := 0; i < min(l.n, lateSamples); i++ {
		if x := l.ring[i]; now.Sub(x.at) < usualMemory {
			xs = append(xs, x.excess)
		}
	}
	l.mu.Unlock()
	if len(xs) == 0 {
		return 0
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i] < xs[j] })
	return xs[(len(xs)-1)*9/10]
}

// recent returns the largest excess of the last lateMemory.
func (l *lateBy) recent(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.roll(now)
	return max(l.cur, l.prev)
}

const (
	// lateMemory is how long a late delivery makes settle longer (half of
	// it at least).
	lateMemory = 2 * time.Second
	// maxSettle bounds settle, in flush intervals.
	maxSettle = 10
	// lateSamples is how many timed batches lateBy.usual reckons with, and
	// usualMemory how recent they must be.
	lateSamples = 128
	usualMemory = 10 * time.Second
)

// settleMargin is how much before its flush interval ends a batch is sent,
// for its delivery.
const settleMargin = time.Millisecond

// pending reports whether outcomes wait to be reported; the caller holds mu.
func (b *Breaker) pendingLocked() bool {
	if b.inflight != nil || len(b.probes) > 0 || len(b.old) > 0 || b.catchUp || len(b.waiters) > 0 {
		return true
	}
	return b.cell.Load().w.Load()&^sealedBit != 0 || b.cell.Load().spill.Len() > 0
}

// heldCount returns how many outcomes wait to be delivered and are not on
// their way; the caller holds mu.
func (b *Breaker) heldCount() uint64 {
	n := b.pendingCount()
	if b.inflight != nil {
		n -= b.inflight.batch.Len()
	}
	return n
}

// pendingCount returns how many outcomes wait to be delivered; the caller
// holds mu.
func (b *Breaker) pendingCount() uint64 {
	var n uint64
	if b.inflight != nil {
		n += b.inflight.batch.Len()
	}
	for _, f := range b.probes {
		n += f.batch.Len()
	}
	for _, o := range b.old {
		n += o.batch.Len()
	}
	c := b.cell.Load()
	ok, ko, _ := unpack(c.w.Load())
	return n + ok + ko + c.spill.Len()
}

// feedFallback keeps the local fallback breaker warm with a batch drained
// for the store, in the order the batch knows; the caller holds mu. While
// the store is away, outcomes go to the fallback one by one instead: the
// batch's last fed outcomes, which came after the others, were given
// already.
func (b *Breaker) feedFallback(batch backend.Batch, fed uint64) {
	if fed >= batch.Len() {
		return
	}
	left := batch.Len() - fed
	const most = 64 // a warm breaker needs the recent past, not all of it
	feed := func(n uint64, fail bool) {
		n = min(n, left)
		left -= n
		for i := uint64(0); i < min(n, most); i++ {
			if fail {
				b.fallback.Fail()
			} else {
				b.fallback.Success()
			}
		}
	}
	if batch.Successes == 0 {
		feed(batch.Failures, true)
		return
	}
	feed(batch.Lead, true)
	feed(batch.Successes, false)
	feed(batch.Trail, true)
}
