package breaker

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	circuitbreaker "github.com/mercari/go-circuitbreaker"

	"github.com/breakwater-go/breakwater/breaker/backend"
)

// Breaker is one instance's handle on a breaker shared by the fleet. Make it
// with New; it is safe for concurrent use.
//
// A closed breaker admits calls from this instance's view of the shared
// state, without I/O, and reports their outcomes in batches (see
// Settings.Reporting); an open one rejects calls until its next probe is
// due; only a half-open one asks the store for every call. The view
// follows the store through the replies to its reports, announcements over
// pub/sub, and a periodic read (Settings.RefreshInterval).
type Breaker struct {
	name     string
	store    Store
	s        Settings
	policy   backend.Policy // what the store needs of s
	clock    Clock
	fallback *circuitbreaker.CircuitBreaker
	hub      *hub
	unwatch  func()
	id       *idKey    // s.Instance's key among the live ids of its name on its store (nil: not tracked)
	idOnce   sync.Once // frees the id

	v        atomic.Pointer[view] // the view of the shared state; never nil
	cell     atomic.Pointer[cell] // outcomes of the view's generation
	degraded atomic.Bool          // the store is unreachable: decide locally
	closed   atomic.Bool
	closing  atomic.Bool   // Close has begun
	gone     chan struct{} // closed once Close has released the breaker
	events   eventQueue    // events on their way to the listeners; the local breaker's state

	// hub state, guarded by the hub's mutex
	queued   atomic.Bool // in the hub's flush queue (set under the hub's mutex; read without it)
	due      time.Time   // when the queued flush is due
	urgent   atomic.Bool // its queued report is due at once
	heapIdx  int         // index in the hub's flush heap, -1 when not in it
	readWant bool        // a read is asked for
	readGen  int64       // the announced generation the read follows (0: none)
	refresh  time.Time   // when the next periodic read is due
	refIdx   int         // index in the hub's refresh heap

	mu           sync.Mutex
	viewVersion  uint64    // counts adopted views
	viewAt       time.Time // the store's clock of the latest answer adopted (Reply.ServerTime)
	lastAnswer   time.Time
	distrust     bool      // an announcement was not confirmed: ignore them for an interval
	lastRead     time.Time // when a read for an announcement was answered
	lastNext     time.Time // when a distrusted announcement of the next generation was read
	inflight     *flush
	probes       []*flush
	old          []pendingGen
	waiters      []chan struct{}
	catchUp      bool       // ask the store to move past the view's generation
	settleNow    bool       // the store asked for the outcomes held (backend.Settler): report them at once
	settleAt     time.Time  // when such a call was last heeded
	looks        []look     // planned looks at failures that settle (see lookAt)
	unreported   uint64     // outcomes that waited while the store was away
	listeners    []listener // in the order they were registered; replaced, never changed
	nextListener int
}

// view is this instance's picture of the shared state.
type view struct {
	known    bool
	state    State
	gen      int64
	deadline time.Time // open: next probe; half-open: a probe place may free
}

func (b *Breaker) view() view { return *b.v.Load() }

// New returns the breaker called name, whose shared state lives in st. It
// returns an error matching ErrInvalidSettings when name or s is invalid.
// New does no I/O; Close releases the breaker.
func New(name string, st Store, s Settings) (*Breaker, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if isNil(st) {
		return nil, &SettingsError{Field: "store", Value: nil, Reason: "want a Store, such as store.New's"}
	}
	s, err := s.normalize()
	if err != nil {
		return nil, err
	}
	var id *idKey
	s.Instance, id = takeID(st, name, s.Instance)
	b := &Breaker{
		id:      id,
		name:    name,
		store:   st,
		s:       s,
		policy:  s.policy(),
		clock:   s.Clock,
		heapIdx: -1,
		refIdx:  -1,
		gone:    make(chan struct{}),
	}
	b.fallback = newFallback(s, b.localChanged)
	b.v.Store(&view{})
	b.cell.Store(&cell{})
	b.attach()
	b.hub = joinHub(b.store, b)
	b.unwatch = st.Watch(name, b.notified)
	if st, ok := st.(backend.Settler); ok && s.Reporting == ReportBatched {
		unwatch, unsettle := b.unwatch, st.WatchSettle(name, b.settleCalled)
		b.unwatch = func() { unwatch(); unsettle() }
	}
	return b, nil
}

func newFallback(s Settings, hook circuitbreaker.StateChangeHook) *circuitbreaker.CircuitBreaker {
	trip := circuitbreaker.NewTripFuncConsecutiveFailures(int64(s.ConsecutiveFailures))
	if s.ConsecutiveFailures == Off {
		rate := s.FailureRate
		if rate == 0 {
			rate = s.SlowCallRate
		}
		trip = circuitbreaker.NewTripFuncFailureRate(int64(s.MinimumCalls), rate)
	}
	return circuitbreaker.New(
		circuitbreaker.WithTripFunc(trip),
		circuitbreaker.WithOpenTimeout(s.OpenDuration),
		circuitbreaker.WithHalfOpenMaxSuccesses(int64(s.ProbeSuccesses)),
		circuitbreaker.WithCounterResetInterval(-1),
		circuitbreaker.WithOnStateChangeHookFn(hook),
	)
}

// Name returns the breaker's name.
func (b *Breaker) Name() string { return b.name }

// Instance returns the id this breaker reports under in the shared state:
// Settings.Instance, or, while another live breaker of the same name on the
// same Store has that id, Settings.Instance followed by "#2" (or "#3", and
// so on).
func (b *Breaker) Instance() string { return b.s.Instance }

// Permit is the admission of one call, from Allow. Report the call's end
// with Done exactly once. A Permit is a small value: passing it around
// costs no allocation.
type Permit struct {
	b     *Breaker
	gen   int64
	lease string
	start time.Time
}

// Probe reports whether the call is a half-open probe.
func (p Permit) Probe() bool { return p.lease != "" }

// Allow asks whether a call may run now. When it may, it returns a Permit
// whose Done must be called with the call's error; when it may not, an
// error matching ErrOpen (an *OpenError saying when the next probe is due),
// ErrClosed after Close, or ctx's error: a ctx already done gets its error
// and no permit, whatever the state (as Check does).
//
// A closed breaker admits calls from this instance's view without I/O or
// locks; an open one rejects them until the next probe is due; a half-open
// one asks the store, which grants the fleet's probe leases.
func (b *Breaker) Allow(ctx context.Context) (Permit, error) {
	v := b.v.Load()
	if v.known && (v.state == Closed || v.state == Disabled) && !b.degraded.Load() && !b.closing.Load() && ctx.Err() == nil {
		p := Permit{b: b, gen: v.gen}
		if b.s.SlowCallDuration > 0 {
			p.start = b.clock.Now()
		}
		return p, nil
	}
	p, err := b.allowSlow(ctx, *v)
	if err != nil {
		b.rejected(err)
	}
	return p, err
}

func (b *Breaker) allowSlow(ctx context.Context, v view) (Permit, error) {
	if err := ctx.Err(); err != nil {
		return Permit{}, err // as Check: a caller gone gets no call
	}
	now := b.clock.Now()
	switch {
	case b.closing.Load():
		return Permit{}, ErrClosed
	case b.degraded.Load():
		return b.allowLocally(v, now)
	case !v.known:
		return b.acquire(ctx, now)
	case v.state == Closed || v.state == Disabled:
		return Permit{b: b, gen: v.gen, start: now}, nil
	case v.state == ForcedOpen:
		return Permit{}, b.openError(v, now)
	case now.Before(v.deadline):
		return Permit{}, b.openError(v, now)
	}
	return b.acquire(ctx, now)
}

func (b *Breaker) openError(v view, now time.Time) *OpenError {
	e := &OpenError{Name: b.name, State: v.state, Generation: v.gen}
	if v.state != ForcedOpen && v.deadline.After(now) {
		e.NextProbeIn = v.deadline.Sub(now)
	}
	return e
}

func (b *Breaker) request() backend.Request {
	return backend.Request{Name: b.name, Instance: b.s.Instance, Policy: &b.policy, Known: b.v.Load().gen}
}

func (b *Breaker) acquire(ctx context.Context, now time.Time) (Permit, error) {
	req := b.request()
	req.Lease = b.s.Instance + "#" + strconv.FormatUint(leaseSeq.Add(1), 10)
	rep, err := b.store.Acquire(ctx, req)
	if err != nil {
		// The store may still grant the lease after the call timed out;
		// release it once the store answers, or the fleet waits for its expiry.
		b.orphan(req.Lease, b.v.Load().gen)
		if ctx.Err() != nil {
			return Permit{}, ctx.Err()
		}
		b.storeFailed(err)
		return b.allowLocally(b.view(), now)
	}
	b.storeAnswered()
	v := b.adopt(rep, now, false, 0)
	switch rep.Verdict {
	case backend.VerdictAllow:
		return Permit{b: b, gen: rep.Generation, start: now}, nil
	case backend.VerdictProbe:
		return Permit{b: b, gen: rep.Generation, lease: rep.Lease, start: now}, nil
	}
	return Permit{}, b.openError(v, now)
}

// allowLocally decides while the store is unreachable.
func (b *Breaker) allowLocally(v view, now time.Time) (Permit, error) {
	switch {
	case b.s.Fallback == FallbackOpen,
		b.s.Fallback == FallbackLocal && b.fallback.Ready():
		return Permit{b: b, gen: v.gen, start: now}, nil
	}
	return Permit{}, &OpenError{Name: b.name, State: Open, Generation: v.gen, Local: true}
}

// Check reports whether a call would be rejected now, from this instance's
// view and without I/O: nil, or an *OpenError saying when the next probe is
// due. It asks nothing of the store and reserves nothing; retry policies ask
// it before every attempt.
func (b *Breaker) Check(ctx context.Context) error {
	err := b.check(ctx)
	if err != nil {
		b.rejected(err)
	}
	return err
}

func (b *Breaker) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closing.Load() {
		return ErrClosed
	}
	v := b.view()
	now := b.clock.Now()
	switch {
	case b.degraded.Load():
		if b.s.Fallback == FallbackClosed || b.s.Fallback == FallbackLocal && !b.fallback.Ready() {
			return &OpenError{Name: b.name, State: Open, Generation: v.gen, Local: true}
		}
	case v.state == ForcedOpen:
		return b.openError(v, now)
	case (v.state == Open || v.state == HalfOpen) && now.Before(v.deadline):
		return b.openError(v, now)
	}
	return nil
}

// Done reports the end of the permitted call with its error, classified as
// Settings.Classify says (nil is a success). With ReportBatched a success
// is counted locally and Done returns at once (it is reported within
// Settings.FlushInterval); a failure while closed (under the
// consecutive-failures policy) and a probe's result are reported at once,
// and Done returns when the store has counted them or failed to, so that
// the next call sees their effect. With ReportSync every outcome is
// reported so. ctx's cancellation does not stop the report. Done never
// waits past the breaker's Close (see Close).
func (p Permit) Done(ctx context.Context, err error) {
	if p.b == nil {
		return
	}
	o := Success
	if err != nil {
		o = p.b.classify(ctx, err)
	}
	p.b.done(ctx, &p, o)
}

func (b *Breaker) done(ctx context.Context, p *Permit, o Outcome) {
	slow := false
	if b.s.SlowCallDuration > 0 && !p.start.IsZero() {
		slow = b.clock.Now().Sub(p.start) >= b.s.SlowCallDuration
	}
	if b.s.Observer != nil {
		b.ended(p, o, slow, b.clock.Now())
	}
	if b.closed.Load() {
		// Close has delivered what had ended before it; nothing reports
		// for b any more.
		return
	}
	fed := false // given to the fallback one by one, not to be given again with its batch
	if b.degraded.Load() {
		b.feedOne(o, slow)
		fed = true
	}
	if p.lease != "" {
		b.probeDone(p, o, slow)
		return
	}
	if o == Ignored {
		return
	}
	urgent, first := b.record(p.gen, o, slow, fed)
	if b.s.Reporting == ReportSync || o == Failure && urgent {
		b.flushAndWait()
		return
	}
	b.hub.schedule(b, urgent, first)
}

// feedOne gives one outcome to the fallback breaker, and hands the
// transition it made, if any, to the listeners.
func (b *Breaker) feedOne(o Outcome, slow bool) {
	b.events.feeding.Add(1)
	switch {
	case o == Failure, o == Success && slow && b.s.SlowCallRate > 0:
		b.fallback.Fail()
	case o == Success:
		b.fallback.Success()
	}
	b.events.feeding.Add(-1)
	b.drain()
}

// probeDone reports a probe's result (or releases its lease) and waits for
// the store's answer, so that the prober's next call sees its effect.
func (b *Breaker) probeDone(p *Permit, o Outcome, slow bool) {
	f := &flush{gen: p.gen, lease: p.lease}
	if o != Ignored {
		f.batch.Add(o == Failure, slow)
	}
	ch := make(chan struct{})
	f.waiters = []chan struct{}{ch}
	b.mu.Lock()
	b.probes = append(b.probes, f)
	b.mu.Unlock()
	b.hub.schedule(b, true, false)
	b.wait(ch)
}

// flushAndWait reports what is pending now and waits for the store's answer.
func (b *Breaker) flushAndWait() {
	ch := make(chan struct{})
	b.mu.Lock()
	b.waiters = append(b.waiters, ch)
	b.mu.Unlock()
	b.hub.schedule(b, true, false)
	b.wait(ch)
}

// wait waits for ch, at most a few store timeouts: a report that could not
// be delivered stays pending, and Done returns. It also returns once b is
// closed: nothing reports for a closed breaker.
func (b *Breaker) wait(ch chan struct{}) {
	select {
	case <-ch:
	case <-b.hub.done:
	case <-b.gone:
	}
}

// orphan releases, once the store answers, a lease that a failed Acquire
// may have been granted.
func (b *Breaker) orphan(lease string, gen int64) {
	b.mu.Lock()
	if len(b.probes) < maxOrphans {
		b.probes = append(b.probes, &flush{gen: gen, lease: lease})
	}
	b.mu.Unlock()
	b.hub.schedule(b, false, false)
}

// maxOrphans bounds the lease releases kept; past it, leases expire.
const maxOrphans = 64

// classify applies the markers (Ignore, MarkSuccess, and go-circuitbreaker's),
// then Settings.Classify.
func (b *Breaker) classify(ctx context.Context, err error) Outcome {
	if err == nil {
		return Success
	}
	if o, ok := markedOutcome(err); ok {
		return o
	}
	if b.s.Classify != nil {
		return b.s.Classify(ctx, err)
	}
	return DefaultClassify(ctx, err)
}

// DefaultClassify counts every error as a failure, except a cancellation by
// the caller (err matches context.Canceled while ctx is done), which is
// ignored: it says nothing about the dependency. Classify hooks may call it
// for the errors they do not decide.
func DefaultClassify(ctx context.Context, err error) Outcome {
	switch {
	case err == nil:
		return Success
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return Ignored
	}
	return Failure
}

// Execute runs fn under b when b admits it, reports its outcome, and returns
// what fn returned. When b rejects the call, fn does not run and the error
// matches ErrOpen. A panic in fn counts as a failure and is re-raised. A
// runtime.Goexit in fn (t.FailNow in a test) counts as a failure too and
// goes on as it is: it does not become a panic.
func Execute[T any](ctx context.Context, b *Breaker, fn func(context.Context) (T, error)) (T, error) {
	p, err := b.Allow(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	finished := false
	defer func() {
		if !finished {
			// fn panicked, or called runtime.Goexit (t.FailNow in a
			// test): the call failed either way. A panic goes on; so
			// does Goexit, which recover does not stop (it returns nil,
			// and a panic(nil) recovers as a *runtime.PanicNilError).
			r := recover()
			b.done(ctx, &p, Failure)
			if r != nil {
				panic(r)
			}
		}
	}()
	v, err := fn(ctx)
	finished = true
	o := Success
	if err != nil {
		o = b.classify(ctx, err)
	}
	b.done(ctx, &p, o)
	return v, err
}

// Snapshot is a breaker's shared state as the store sees it.
type Snapshot struct {
	Name       string
	State      State
	Generation int64
	Counts     Counts
	// NextProbeIn is how long until a probe may run (Open).
	NextProbeIn time.Duration
	// Reason is why the breaker entered State; ChangedBy is the instance
	// that made the transition, InState how long ago.
	Reason    string
	ChangedBy string
	InState   time.Duration
}

// Snapshot reads the shared state from the store, the window included.
// Outcomes this instance has not reported yet are not in it; Flush first
// to include them.
func (b *Breaker) Snapshot(ctx context.Context) (Snapshot, error) {
	if b.closed.Load() {
		return Snapshot{}, ErrClosed
	}
	req := b.request()
	req.Full = true
	rep, err := b.store.Read(ctx, req)
	if err != nil {
		return Snapshot{}, fmt.Errorf("breaker %q: snapshot: %w", b.name, err)
	}
	b.storeAnswered()
	b.adopt(rep, b.clock.Now(), false, 0)
	snap := Snapshot{
		Name: b.name, State: State(rep.State), Generation: rep.Generation, Counts: Counts(rep.Counts),
		Reason: rep.Reason, ChangedBy: rep.By, InState: rep.InState,
	}
	if rep.State == backend.Open {
		snap.NextProbeIn = rep.Wait
	}
	return snap, nil
}

// Flush reports the outcomes this instance has counted and not yet
// reported, and returns when the store has counted them, or with an error
// when it could not be reached before ctx ended (they then stay pending).
func (b *Breaker) Flush(ctx context.Context) error {
	if b.closed.Load() {
		return ErrClosed
	}
	return b.flushAll(ctx, false)
}

// flushAll delivers what is pending; with once, it gives up after the
// first failed delivery instead of trying again until ctx ends.
func (b *Breaker) flushAll(ctx context.Context, once bool) error {
	for {
		ch := make(chan struct{})
		b.mu.Lock()
		if !b.pendingLocked() {
			b.mu.Unlock()
			return nil
		}
		b.waiters = append(b.waiters, ch)
		b.mu.Unlock()
		b.hub.schedule(b, true, false)
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("breaker %q: flush: %w", b.name, ctx.Err())
		case <-b.gone:
			return b.flushedBeforeClose()
		}
		if !b.degraded.Load() {
			continue
		}
		b.mu.Lock()
		pending := b.pendingLocked()
		b.mu.Unlock()
		if !pending {
			return nil
		}
		if once {
			return fmt.Errorf("breaker %q: flush: store unreachable", b.name)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("breaker %q: flush: store unreachable: %w", b.name, ctx.Err())
		case <-b.gone:
			return b.flushedBeforeClose()
		case <-time.After(retryDelay):
		}
	}
}

// flushedBeforeClose is a Flush's result when b was closed meanwhile: nil
// when Close delivered everything, else an error matching ErrClosed.
func (b *Breaker) flushedBeforeClose() error {
	b.mu.Lock()
	pending := b.pendingLocked()
	b.mu.Unlock()
	if pending {
		return fmt.Errorf("breaker %q: flush: %w", b.name, ErrClosed)
	}
	return nil
}

// ForceOpen holds the breaker open for the whole fleet until ForceClose or Reset.
func (b *Breaker) ForceOpen(ctx context.Context) error { return b.force(ctx, backend.CommandOpen, 0) }

// ForceOpenFor opens the breaker for the whole fleet for d, as a trip
// would: it then half-opens and probes as usual.
func (b *Breaker) ForceOpenFor(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return &SettingsError{Field: "d", Value: d, Reason: "want > 0"}
	}
	return b.force(ctx, backend.CommandOpen, d)
}

// ForceClose closes the breaker for the whole fleet, clearing its counts.
func (b *Breaker) ForceClose(ctx context.Context) error { return b.force(ctx, backend.CommandClose, 0) }

// Disable lets every call through, fleet-wide, until ForceClose or Reset.
func (b *Breaker) Disable(ctx context.Context) error { return b.force(ctx, backend.CommandDisable, 0) }

// Reset clears the breaker's counts, totals and windows and closes it for
// the whole fleet. It also repairs keys that hold foreign data.
func (b *Breaker) Reset(ctx context.Context) error { return b.force(ctx, backend.CommandReset, 0) }

func (b *Breaker) force(ctx context.Context, c backend.Command, d time.Duration) error {
	if b.closed.Load() {
		return ErrClosed
	}
	req := b.request()
	req.Command = c
	req.OpenFor = d
	req.Random = rand.Float64()
	rep, err := b.store.Force(ctx, req)
	if err != nil {
		return fmt.Errorf("breaker %q: %s: %w", b.name, commandNames[c], err)
	}
	if c == backend.CommandClose || c == backend.CommandReset {
		b.fallback.Reset()
	}
	b.storeAnswered()
	b.adopt(rep, b.clock.Now(), false, 0)
	return nil
}

var commandNames = map[backend.Command]string{backend.CommandOpen: "force open", backend.CommandClose: "force close",
	backend.CommandDisable: "disable", backend.CommandReset: "reset"}

// Listen calls fn with every event of b until the returned function is
// called. b's listeners hear its events one at a time, in order, outside
// b's locks, on the goroutine that caused the event or on another; each
// event goes to the listeners in the order they were registered. fn
// should be quick.
func (b *Breaker) Listen(fn func(Event)) (stop func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := b.nextListener
	b.nextListener++
	b.listeners = append(b.listeners[:len(b.listeners):len(b.listeners)], listener{id, fn})
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for i, l := range b.listeners {
			if l.id == id {
				b.listeners = append(b.listeners[:i:i], b.listeners[i+1:]...)
				return
			}
		}
	}
}

// closeFlushTimeout bounds how long Close tries to deliver pending outcomes.
const closeFlushTimeout = 5 * time.Second

// Close delivers the outcomes this instance has not reported yet (one
// attempt, of at most a few seconds; call Flush first to choose the bound), stops
// following the shared state and releases the breaker. The shared state is
// untouched. Later calls of every method return ErrClosed; Allow, Check
// and Execute do so as soon as Close begins, so that traffic does not keep
// Close delivering. A call that ends while Close runs has its outcome delivered with the others, or
// Close's error counts it as not delivered; Done after Close returns at
// once and delivers nothing (nor does a Done waiting for the store when
// the breaker is released: it returns then). Close may be called again, or
// concurrently: those calls return nil once the breaker is released.
func (b *Breaker) Close() error {
	if !b.closing.CompareAndSwap(false, true) {
		<-b.gone // another Close releases b
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeFlushTimeout)
	err := b.flushAll(ctx, true)
	cancel()
	b.closed.Store(true)
	b.unwatch()
	b.hub.leave(b)
	// Outcomes of calls that ended while Close delivered the others (a
	// batch the hub has taken is answered still).
	b.mu.Lock()
	left := b.heldCount()
	answered := b.inflight == nil
	b.mu.Unlock()
	if answered {
		b.releaseID() // else once its last report is answered
	}
	close(b.gone)
	b.detach()
	if err != nil {
		return fmt.Errorf("breaker %q: close: outcomes not delivered: %w", b.name, err)
	}
	if left > 0 {
		return fmt.Errorf("breaker %q: close: %d outcomes of calls that ended during Close not delivered", b.name, left)
	}
	return nil
}
