package breaker

import (
	"container/heap"
	"context"
	"errors"
	"math/rand"
	"reflect"
	"sync"
	"time"

	"github.com/breakwater-go/breakwater/breaker/backend"
)

// The hub does the I/O of all breakers of one Store in a process, on one
// goroutine: it reports their batches when due, reads their state when an
// announcement, a resubscription or the periodic refresh asks for it, and
// sends what is due at once in one Store.Do call (one pipelined round trip).
// One call at a time means at most one batch of a breaker in flight. A
// breaker costs the hub no goroutine and no timer of its own.

const (
	// maxOps bounds the ops of one Store.Do call.
	maxOps = 512
	// retryDelay is how long a breaker waits before it tries the store again
	// after a failed report or read.
	retryDelay = 50 * time.Millisecond
	// resubscribeSpread bounds the random delay of the reads that follow a
	// resubscription, so that a fleet does not read all at once.
	resubscribeSpread = 100 * time.Millisecond
)

type hub struct {
	store Store
	ctx   context.Context
	stop  context.CancelFunc
	done  chan struct{}
	wake  chan struct{}

	mu       sync.Mutex
	members  int
	flushes  breakerHeap // breakers with a report or read due, by due
	refresh  breakerHeap // every breaker, by its next periodic read
	reads    []*Breaker  // reads asked for now (announcements)
	spread   []*Breaker  // reads after a resubscription, spread out
	spreadAt time.Time
}

var hubs = struct {
	sync.Mutex
	m map[Store]*hub
}{m: map[Store]*hub{}}

// joinHub returns the hub of st, starting it for its first breaker.
func joinHub(st Store, b *Breaker) *hub {
	hubs.Lock()
	defer hubs.Unlock()
	comparable := reflect.TypeOf(st).Comparable()
	var h *hub
	if comparable {
		h = hubs.m[st]
	}
	if h == nil {
		h = &hub{store: st, done: make(chan struct{}), wake: make(chan struct{}, 1),
			flushes: breakerHeap{at: func(b *Breaker) time.Time { return b.due }, idx: func(b *Breaker) *int { return &b.heapIdx }},
			refresh: breakerHeap{at: func(b *Breaker) time.Time { return b.refresh }, idx: func(b *Breaker) *int { return &b.refIdx }},
		}
		h.ctx, h.stop = context.WithCancel(context.Background())
		if comparable {
			hubs.m[st] = h
		}
		go h.loop()
	}
	h.mu.Lock()
	h.members++
	b.refresh = time.Now().Add(jitter(b.s.RefreshInterval))
	heap.Push(&h.refresh, b)
	h.mu.Unlock()
	return h
}

// leave removes b; the last breaker to leave stops the hub.
func (h *hub) leave(b *Breaker) {
	hubs.Lock()
	defer hubs.Unlock()
	h.mu.Lock()
	if b.heapIdx >= 0 {
		heap.Remove(&h.flushes, b.heapIdx)
	}
	if b.refIdx >= 0 {
		heap.Remove(&h.refresh, b.refIdx)
	}
	b.queued.Store(false)
	h.members--
	last := h.members == 0
	h.mu.Unlock()
	if last {
		if reflect.TypeOf(h.store).Comparable() && hubs.m[h.store] == h {
			delete(hubs.m, h.store)
		}
		h.stop()
		<-h.done
	}
}

func (h *hub) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// schedule asks for b's report: at once when urgent, else after its flush
// interval. first says that the outcome is the first of its batch: its
// report may be due sooner than what b waits for (a look, a retry). A
// breaker already waiting for its report costs atomic loads: the hot path
// takes no lock shared with other breakers.
func (h *hub) schedule(b *Breaker, urgent, first bool) {
	if b.queued.Load() && !first && (!urgent || b.urgent.Load()) {
		return
	}
	// A batch is sent a little before its interval ends, so that it arrives
	// within the interval: the store lets failures settle for that long.
	due := time.Now().Add(b.flushWait())
	if urgent {
		due = time.Now()
	}
	h.mu.Lock()
	if urgent {
		b.urgent.Store(true)
	}
	h.queueLocked(b, due)
	h.mu.Unlock()
	// The hub may sleep past this breaker's due time: wake it to look again.
	h.signal()
}

// scheduleAt asks for b's report at due at the latest.
func (h *hub) scheduleAt(b *Breaker, due time.Time) {
	h.mu.Lock()
	h.queueLocked(b, due)
	h.mu.Unlock()
	h.signal()
}

// queueLocked puts b in the flush queue, due at due at the latest, unless
// it is closed; the caller holds h.mu.
func (h *hub) queueLocked(b *Breaker, due time.Time) {
	switch {
	case b.heapIdx >= 0:
		if due.Before(b.due) {
			b.due = due
			heap.Fix(&h.flushes, b.heapIdx)
		}
	case !b.closed.Load():
		b.due = due
		heap.Push(&h.flushes, b)
		b.queued.Store(true)
	}
}

// read asks for a read of b's state: at once for an announcement (gen >
// 0), spread over a short random delay after a resubscription (gen 0).
func (h *hub) read(b *Breaker, gen int64) {
	h.mu.Lock()
	if b.readWant {
		h.mu.Unlock()
		return
	}
	b.readWant = true
	b.readGen = gen
	if gen > 0 {
		h.reads = append(h.reads, b)
	} else {
		if len(h.spread) == 0 {
			h.spreadAt = time.Now().Add(time.Duration(rand.Int63n(int64(resubscribeSpread))))
		}
		h.spread = append(h.spread, b)
	}
	h.mu.Unlock()
	h.signal()
}

// op is one breaker's part in a round.
type op struct {
	b       *Breaker
	f       *flush // a report, or nil for a read
	gen     int64  // the announced generation a read follows
	version uint64 // the view's version when the read was asked
}

func (h *hub) loop() {
	defer close(h.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var ops []op
	var storeOps []backend.Op
	for {
		now := time.Now()
		ops = h.collect(now, ops[:0])
		if len(ops) == 0 {
			next := h.nextDue(now)
			timer.Reset(next.Sub(now))
			select {
			case <-h.ctx.Done():
				return
			case <-h.wake:
			case <-timer.C:
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			continue
		}
		storeOps = storeOps[:0]
		for _, o := range ops {
			storeOps = append(storeOps, o.request())
		}
		began := time.Now()
		h.store.Do(h.ctx, storeOps)
		took := time.Since(began)
		for i, o := range ops {
			o.b.answer(o, storeOps[i], took)
		}
	}
}

// collect takes the ops due now: urgent and timed reports, reads for
// announcements, spread reads and periodic reads, up to maxOps.
func (h *hub) collect(now time.Time, ops []op) []op {
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(ops) < maxOps && h.flushes.Len() > 0 && !h.flushes.first().due.After(now) {
		b := heap.Pop(&h.flushes).(*Breaker)
		// Out of the queue before its cell is drained: an outcome counted
		// after this asks for the next report.
		b.queued.Store(false)
		b.urgent.Store(false)
		if f := b.takeFlush(now); f != nil {
			ops = append(ops, op{b: b, f: f})
		} else if b.degraded.Load() {
			ops = append(ops, b.readOp(0))
		}
		if next := b.plannedLook(); next.After(now) {
			// a look planned for later: b is back in the queue for it,
			// whatever this turn sent
			h.queueLocked(b, next)
		}
	}
	for len(ops) < maxOps && len(h.reads) > 0 {
		b := h.reads[0]
		h.reads = h.reads[1:]
		b.readWant = false
		if !b.closed.Load() {
			ops = append(ops, b.readOp(b.readGen))
		}
	}
	if len(h.spread) > 0 && !h.spreadAt.After(now) {
		for len(ops) < maxOps && len(h.spread) > 0 {
			b := h.spread[0]
			h.spread = h.spread[1:]
			b.readWant = false
			if !b.closed.Load() {
				ops = append(ops, b.readOp(0))
			}
		}
	}
	for len(ops) < maxOps && h.refresh.Len() > 0 && !h.refresh.first().refresh.After(now) {
		b := h.refresh.first()
		interval := b.s.RefreshInterval
		b.mu.Lock()
		last, distrust, lastRead := b.lastAnswer, b.distrust, b.lastRead
		switch {
		case distrust && now.Sub(lastRead) >= interval:
			// An announcement was false an interval ago: trust them again.
			// The next one's read is this interval's read.
			b.distrust = false
			b.mu.Unlock()
			b.refresh = now.Add(jitter(interval))
		case last.Add(interval).After(now):
			b.mu.Unlock() // heard from the store within the interval
			b.refresh = last.Add(interval)
		default:
			b.mu.Unlock()
			ops = append(ops, b.readOp(0))
			b.refresh = now.Add(jitter(interval))
		}
		heap.Fix(&h.refresh, 0)
	}
	return ops
}

// nextDue returns when the hub should look again.
func (h *hub) nextDue(now time.Time) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	next := now.Add(time.Minute)
	if b := h.flushes.first(); b != nil && b.due.Before(next) {
		next = b.due
	}
	if b := h.refresh.first(); b != nil && b.refresh.Before(next) {
		next = b.refresh
	}
	if len(h.spread) > 0 && h.spreadAt.Before(next) {
		next = h.spreadAt
	}
	if len(h.reads) > 0 {
		next = now
	}
	return next
}

// jitter returns d varied by up to a tenth either way.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + time.Duration(rand.Int63n(int64(d/5)+1))
}

func (b *Breaker) takeFlush(now time.Time) *flush {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nextFlush(now)
}

func (b *Breaker) readOp(gen int64) op {
	b.mu.Lock()
	defer b.mu.Unlock()
	return op{b: b, gen: gen, version: b.viewVersion}
}

func (o op) request() backend.Op {
	req := o.b.request()
	if o.f == nil {
		return backend.Op{Kind: backend.OpRead, Request: req}
	}
	req.Generation = o.f.gen
	req.Seq = o.f.seq
	req.Lease = o.f.lease
	req.Batch = o.f.batch
	req.SettledThrough = o.f.through
	return backend.Op{Kind: backend.OpRecord, Request: req}
}

// answer takes the store's answer to b's part in a round, which took
// took.
func (b *Breaker) answer(o op, res backend.Op, took time.Duration) {
	now, wall := b.clock.Now(), time.Now()
	if res.Err != nil {
		if o.f != nil {
			b.flushed(o.f, took, wall, res.Err)
		}
		b.storeFailedFor(res.Err, o)
		return
	}
	b.storeAnswered()
	if o.f == nil {
		b.readDone(res.Reply, o.gen, o.version)
		return
	}
	b.mu.Lock()
	if res.Reply.Verdict == backend.VerdictDuplicate && !o.f.failed && o.f.jumps < maxSeqJumps &&
		b.inflight == o.f && !b.closed.Load() {
		// A batch never sent before is no copy of one the store applied:
		// the store holds a later sequence for this instance than this
		// process gives (an earlier process of the same Instance on a host
		// whose clock ran ahead). Go on above it, and send the batch again.
		o.f.jumps++
		raiseSeq(res.Reply.LastSeq)
		o.f.seq = nextSeq(time.Now())
		b.mu.Unlock()
		b.hub.schedule(b, true, false)
		return
	}
	if b.inflight == o.f {
		b.inflight = nil
	}
	if b.closed.Load() && b.inflight == nil {
		// Closed, and its last report answered: b's id is free.
		defer b.releaseID()
	}
	if o.f.batch.Len() > 0 && !o.f.failed && b.s.Reporting == ReportBatched {
		// (a batch that waited for the store to come back says nothing
		// about this process's pace)
		lateness.delivered(o.f.batch.Age(wall), b.s.FlushInterval, wall)
		if o.f.timed {
			lateness.timed(o.f.batch.Age(wall), b.flushWait(), wall)
		}
	}
	more := b.pendingLocked()
	b.mu.Unlock()
	b.flushed(o.f, took, wall, nil)
	b.adopt(res.Reply, now, false, 0)
	for _, ch := range o.f.waiters {
		close(ch)
	}
	if more {
		// Outcomes came while this batch was on its way: due a flush wait
		// after the first of them, not after this answer.
		if b.urgentPending() {
			b.hub.schedule(b, true, false)
		} else {
			b.hub.scheduleAt(b, b.firstDue())
		}
	}
	if o.f.batch.Failures > 0 && o.f.batch.Settle > 0 && b.s.ConsecutiveFailures != Off &&
		res.Reply.State == backend.Closed && (o.f.gen == 0 || res.Reply.Generation == o.f.gen) {
		// Look again once these failures have settled: they may trip the
		// breaker then, with no other outcome to bring them up. (Not when
		// the answer says the breaker is no longer closed at the batch's
		// generation: the look would be moot.) When the store asked every
		// instance for what it holds, all that happened before this answer
		// has settled once they had time to report it.
		if res.Reply.Settling {
			b.lookAt(res.Reply.ServerTime, wall.Add(b.settleCallWait(took, o.f.batch.Settle)), o.f.batch.Settle)
		} else {
			_, age := o.f.batch.Ages(wall)
			b.lookAt(res.Reply.ServerTime.Add(-age), wall.Add(o.f.batch.Settle-age), o.f.batch.Settle)
		}
	}
	if !o.f.again.IsZero() {
		b.lookAt(o.f.again, wall.Add(o.f.againAfter), o.f.batch.Settle)
	}
}

// flushed tells the observer of a batch the store answered (err nil) or
// did not take.
func (b *Breaker) flushed(f *flush, took time.Duration, wall time.Time, err error) {
	obs := b.s.Observer
	if obs == nil || f.batch.Len() == 0 {
		return
	}
	b.mu.Lock()
	pending := b.pendingCount()
	b.mu.Unlock()
	obs.BatchFlushed(FlushInfo{Name: b.name, Outcomes: int(f.batch.Len()), Pending: int(pending),
		Duration: took, Age: f.batch.Age(wall), Err: err})
}

// lookAt plans a look at the failures that settled through the store's
// time through, due when they have (local time), reckoned with the
// settling time with.
func (b *Breaker) lookAt(through, due time.Time, with time.Duration) {
	b.mu.Lock()
	// Said to the store only once it is true: a report sent sooner must not
	// count other instances' failures as settled.
	b.planLook(look{through: through, due: due, with: with})
	b.mu.Unlock()
	b.hub.scheduleAt(b, due)
}

// settleCalled is b's backend.Settler function: the store asks every
// instance for the outcomes it holds of b, since a run of failures may
// trip b once they are in. What b holds goes at once, or a quarter of a
// flush interval after the last report a call brought, whichever is later:
// a flood of calls (a real one published again and again) costs at most
// four reports per interval, and a call is never dropped (the instance
// that made the run looks half an interval after it).
func (b *Breaker) settleCalled(int64) {
	if b.closed.Load() {
		return
	}
	now := time.Now()
	b.mu.Lock()
	held := !b.settleNow && b.heldCount() > 0
	due := now
	if held {
		if next := b.settleAt.Add(b.s.FlushInterval / 4); next.After(now) {
			due = next
		}
		b.settleNow, b.settleAt = true, due
	}
	b.mu.Unlock()
	if !held {
		return
	}
	if due.Equal(now) {
		b.hub.schedule(b, true, false)
	} else {
		b.hub.scheduleAt(b, due)
	}
}

// settleCallWait is how long after the answer that asked every instance
// for its outcomes (Reply.Settling) b looks at its failures again: the
// others hear the call about when b has its answer, and their reports
// arrive about as late after it as this process's reports arrive after
// they are due (lateBy.usual), or a round trip like b's. Half a flush
// interval at least, and a settling time at most.
func (b *Breaker) settleCallWait(took, settle time.Duration) time.Duration {
	return min(settle, max(b.s.FlushInterval/2, took+settleMargin, lateness.usual(time.Now())))
}

// plannedLook returns when b's next planned look is due (zero: none).
func (b *Breaker) plannedLook() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nextLook()
}

// urgentPending reports whether what waits should go at once.
func (b *Breaker) urgentPending() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inflight != nil || len(b.probes) > 0 || len(b.old) > 0 || b.catchUp || len(b.waiters) > 0 || b.settleNow ||
		b.cell.Load().w.Load()>>koShift&fieldMax > 0
}

// storeFailedFor handles a failed op: the batch stays in flight, to be sent
// again (with its sequence number, so that it counts once) after a delay;
// every caller waiting for a report goes (its outcome waits), and the
// breaker decides locally meanwhile.
func (b *Breaker) storeFailedFor(err error, o op) {
	b.mu.Lock()
	waiters := b.waiters
	b.waiters = nil
	if o.f != nil {
		waiters = append(waiters, o.f.waiters...)
		o.f.waiters = nil
		if !o.f.failed {
			o.f.failed = true
			b.unreported += o.f.batch.Len()
		}
	}
	b.mu.Unlock()
	// On the fallback before the waiting callers go: their next call must
	// be decided locally.
	if !errors.Is(err, ErrClosed) && !(errors.Is(err, context.Canceled) && b.hub.ctx.Err() != nil) {
		b.storeFailed(err)
	}
	for _, ch := range waiters {
		close(ch)
	}
	if errors.Is(err, ErrClosed) {
		return
	}
	if errors.Is(err, context.Canceled) && b.hub.ctx.Err() != nil {
		return
	}
	b.hub.scheduleAt(b, time.Now().Add(retryDelay))
}

// breakerHeap orders breakers by a time of theirs (their next report, or
// their next periodic read), keeping each one's index in it.
type breakerHeap struct {
	bs  []*Breaker
	at  func(*Breaker) time.Time
	idx func(*Breaker) *int // -1 when not in the heap
}

func (q *breakerHeap) Len() int           { return len(q.bs) }
func (q *breakerHeap) Less(i, j int) bool { return q.at(q.bs[i]).Before(q.at(q.bs[j])) }
func (q *breakerHeap) Swap(i, j int) {
	q.bs[i], q.bs[j] = q.bs[j], q.bs[i]
	*q.idx(q.bs[i]), *q.idx(q.bs[j]) = i, j
}
func (q *breakerHeap) Push(x any) {
	b := x.(*Breaker)
	*q.idx(b) = len(q.bs)
	q.bs = append(q.bs, b)
}
func (q *breakerHeap) Pop() any {
	n := len(q.bs) - 1
	b := q.bs[n]
	q.bs[n] = nil
	q.bs = q.bs[:n]
	*q.idx(b) = -1
	return b
}

// first returns the breaker due first, or nil.
func (q *breakerHeap) first() *Breaker {
	if len(q.bs) == 0 {
		return nil
	}
	return q.bs[0]
}
