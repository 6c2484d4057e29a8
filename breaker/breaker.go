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
)

// Breaker is one instance's handle on a breaker shared by the fleet. Make it
// with New; it is safe for concurrent use.
type Breaker struct {
	name     string
	store    Store
	s        Settings
	clock    Clock
	fallback *circuitbreaker.CircuitBreaker
	leases   atomic.Uint64

	ctx     context.Context // ends with Close; bounds background refreshes
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	unwatch func()

	mu           sync.Mutex
	view         view
	degraded     bool
	unreported   uint64
	listeners    map[int]func(Event)
	nextListener int
	refreshing   bool
	refreshAgain bool
	orphans      []string // lease ids a failed Acquire may have been granted
	closed       bool
}

// view is this instance's picture of the shared state.
type view struct {
	known    bool
	state    State
	gen      int64
	deadline time.Time // open: next probe; half-open: a probe place may free
}

// New returns the breaker called name, whose shared state lives in st. It
// returns an error matching ErrInvalidSettings when name or s is invalid.
// New does no I/O; Close releases the breaker's subscription.
func New(name string, st Store, s Settings) (*Breaker, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if st == nil {
		return nil, &SettingsError{Field: "store", Value: nil, Reason: "want a Store, such as store.New's"}
	}
	s, err := s.normalize()
	if err != nil {
		return nil, err
	}
	b := &Breaker{
		name:      name,
		store:     st,
		s:         s,
		clock:     s.Clock,
		fallback:  newFallback(s),
		listeners: map[int]func(Event){},
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.unwatch = st.Watch(name, b.notified)
	return b, nil
}

func newFallback(s Settings) *circuitbreaker.CircuitBreaker {
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
	)
}

// Name returns the breaker's name.
func (b *Breaker) Name() string { return b.name }

// Instance returns the id this instance uses in the shared state.
func (b *Breaker) Instance() string { return b.s.Instance }

// State returns this instance's view of the shared state, without I/O.
// Snapshot asks the store.
func (b *Breaker) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.view.state
}

// Permit is the admission of one call, from Allow. Report the call's end
// with Done exactly once; later calls of Done do nothing.
type Permit struct {
	b     *Breaker
	gen   int64
	lease string
	start time.Time
	done  atomic.Bool
}

// Probe reports whether the call is a half-open probe.
func (p *Permit) Probe() bool { return p.lease != "" }

// Allow asks whether a call may run now. When it may, it returns a Permit
// whose Done must be called with the call's error; when it may not, an
// error matching ErrOpen (an *OpenError saying when the next probe is due),
// or ctx's error.
//
// A closed breaker admits calls from this instance's view without I/O; an
// open one rejects them until the next probe is due; a half-open one asks
// the store, which grants the fleet's probe leases.
func (b *Breaker) Allow(ctx context.Context) (*Permit, error) {
	now := b.clock.Now()
	b.mu.Lock()
	v, degraded, closed := b.view, b.degraded, b.closed
	b.mu.Unlock()
	switch {
	case closed:
		return nil, ErrClosed
	case degraded || !v.known:
		return b.acquire(ctx, now)
	case v.state == Closed || v.state == Disabled:
		return b.permit(v.gen, "", now), nil
	case v.state == ForcedOpen:
		return nil, b.openError(v, now)
	case now.Before(v.deadline):
		return nil, b.openError(v, now)
	}
	return b.acquire(ctx, now)
}

func (b *Breaker) permit(gen int64, lease string, now time.Time) *Permit {
	return &Permit{b: b, gen: gen, lease: lease, start: now}
}

func (b *Breaker) openError(v view, now time.Time) *OpenError {
	e := &OpenError{Name: b.name, State: v.state, Generation: v.gen}
	if v.state != ForcedOpen && v.deadline.After(now) {
		e.NextProbeIn = v.deadline.Sub(now)
	}
	return e
}

func (b *Breaker) request() Request {
	return Request{Name: b.name, Instance: b.s.Instance, Settings: &b.s}
}

func (b *Breaker) acquire(ctx context.Context, now time.Time) (*Permit, error) {
	req := b.request()
	req.Lease = b.s.Instance + "#" + strconv.FormatUint(b.leases.Add(1), 10)
	rep, err := b.store.Acquire(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			b.orphan(req.Lease)
			return nil, ctx.Err()
		}
		// The store may still grant the lease after the call timed out;
		// release it once the store answers, or the fleet waits for its expiry.
		b.orphan(req.Lease)
		b.storeFailed(err, 0)
		return b.allowLocally(now)
	}
	b.storeAnswered()
	v := b.adopt(rep, now)
	switch rep.Verdict {
	case VerdictAllow:
		return b.permit(rep.Generation, "", now), nil
	case VerdictProbe:
		return b.permit(rep.Generation, rep.Lease, now), nil
	}
	return nil, b.openError(v, now)
}

// allowLocally decides while the store is unreachable.
func (b *Breaker) allowLocally(now time.Time) (*Permit, error) {
	b.mu.Lock()
	v := b.view
	b.mu.Unlock()
	switch {
	case b.s.Fallback == FallbackOpen,
		b.s.Fallback == FallbackLocal && b.fallback.Ready():
		return b.permit(v.gen, "", now), nil
	}
	return nil, &OpenError{Name: b.name, State: v.state, Generation: v.gen, Local: true}
}

// Check reports whether a call would be rejected now, from this instance's
// view and without I/O: nil, or an *OpenError saying when the next probe is
// due. It asks nothing of the store and reserves nothing; retry policies ask
// it before every attempt.
func (b *Breaker) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := b.clock.Now()
	b.mu.Lock()
	v, degraded, closed := b.view, b.degraded, b.closed
	b.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case degraded:
		if b.s.Fallback == FallbackClosed || b.s.Fallback == FallbackLocal && !b.fallback.Ready() {
			return &OpenError{Name: b.name, State: v.state, Generation: v.gen, Local: true}
		}
	case v.state == ForcedOpen:
		return b.openError(v, now)
	case (v.state == Open || v.state == HalfOpen) && now.Before(v.deadline):
		return b.openError(v, now)
	}
	return nil
}

// Done reports the end of the permitted call with its error, classified as
// Settings.Classify says (nil is a success). It counts the outcome in the
// store (the fallback breaker counts it too) and returns when the store has
// answered or failed; ctx's cancellation does not stop the report.
func (p *Permit) Done(ctx context.Context, err error) {
	if p == nil || !p.done.CompareAndSwap(false, true) {
		return
	}
	p.b.done(ctx, p, p.b.classify(ctx, err))
}

func (b *Breaker) done(ctx context.Context, p *Permit, o Outcome) {
	now := b.clock.Now()
	slow := b.s.SlowCallDuration > 0 && now.Sub(p.start) >= b.s.SlowCallDuration
	switch o {
	case Success:
		if slow && b.s.SlowCallRate > 0 {
			b.fallback.Fail()
		} else {
			b.fallback.Success()
		}
	case Failure:
		b.fallback.Fail()
	case Ignored:
		if p.lease == "" {
			return
		}
	}
	req := b.request()
	req.Generation = p.gen
	req.Lease = p.lease
	req.Results = []Result{{Outcome: o, Slow: slow}}
	rep, err := b.store.Record(context.WithoutCancel(ctx), req)
	if err != nil {
		b.storeFailed(err, 1)
		return
	}
	b.storeAnswered()
	b.adopt(rep, now)
}

// classify applies the markers (Ignore, MarkSuccess, and go-circuitbreaker's), then Settings.Classify.
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
// matches ErrOpen. A panic in fn counts as a failure and is re-raised.
func Execute[T any](ctx context.Context, b *Breaker, fn func(context.Context) (T, error)) (T, error) {
	p, err := b.Allow(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	finished := false
	defer func() {
		if !finished {
			r := recover()
			if p.done.CompareAndSwap(false, true) {
				b.done(ctx, p, Failure)
			}
			panic(r)
		}
	}()
	v, err := fn(ctx)
	finished = true
	p.Done(ctx, err)
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

// Snapshot reads the shared state from the store.
func (b *Breaker) Snapshot(ctx context.Context) (Snapshot, error) {
	rep, err := b.store.Read(ctx, b.request())
	if err != nil {
		return Snapshot{}, fmt.Errorf("breaker %q: snapshot: %w", b.name, err)
	}
	b.storeAnswered()
	b.adopt(rep, b.clock.Now())
	snap := Snapshot{
		Name: b.name, State: rep.State, Generation: rep.Generation, Counts: rep.Counts,
		Reason: rep.Reason, ChangedBy: rep.By, InState: rep.InState,
	}
	if rep.State == Open {
		snap.NextProbeIn = rep.Wait
	}
	return snap, nil
}

// ForceOpen holds the breaker open for the whole fleet until ForceClose or Reset.
func (b *Breaker) ForceOpen(ctx context.Context) error { return b.force(ctx, CommandOpen) }

// ForceClose closes the breaker for the whole fleet, clearing its counts.
func (b *Breaker) ForceClose(ctx context.Context) error { return b.force(ctx, CommandClose) }

// Disable lets every call through, fleet-wide, until ForceClose or Reset.
func (b *Breaker) Disable(ctx context.Context) error { return b.force(ctx, CommandDisable) }

// Reset clears the breaker's counts, totals and windows and closes it for
// the whole fleet. It also repairs keys that hold foreign data.
func (b *Breaker) Reset(ctx context.Context) error { return b.force(ctx, CommandReset) }

func (b *Breaker) force(ctx context.Context, c Command) error {
	req := b.request()
	req.Command = c
	req.Random = rand.Float64()
	rep, err := b.store.Force(ctx, req)
	if err != nil {
		return fmt.Errorf("breaker %q: %s: %w", b.name, commandNames[c], err)
	}
	if c == CommandClose || c == CommandReset {
		b.fallback.Reset()
	}
	b.storeAnswered()
	b.adopt(rep, b.clock.Now())
	return nil
}

var commandNames = map[Command]string{CommandOpen: "force open", CommandClose: "force close",
	CommandDisable: "disable", CommandReset: "reset"}

// Listen calls fn with every event of b until the returned function is
// called. fn runs outside b's locks, possibly on several goroutines at once;
// it should be quick.
func (b *Breaker) Listen(fn func(Event)) (stop func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := b.nextListener
	b.nextListener++
	b.listeners[id] = fn
	return func() {
		b.mu.Lock()
		delete(b.listeners, id)
		b.mu.Unlock()
	}
}

func (b *Breaker) emit(e Event) {
	b.mu.Lock()
	fns := make([]func(Event), 0, len(b.listeners))
	for _, fn := range b.listeners {
		fns = append(fns, fn)
	}
	b.mu.Unlock()
	for _, fn := range fns {
		fn(e)
	}
}

// adopt takes a store's reply as the newest view unless a newer generation
// is already known, and announces a change of state. It returns the view.
func (b *Breaker) adopt(rep Reply, now time.Time) view {
	b.mu.Lock()
	prev := b.view
	if prev.known && rep.Generation < prev.gen {
		b.mu.Unlock()
		return prev
	}
	next := view{known: true, state: rep.State, gen: rep.Generation}
	switch {
	case rep.State == Open:
		next.deadline = now.Add(rep.Wait)
	case rep.State == HalfOpen && rep.Verdict == VerdictReject:
		// Reject locally while the probe runs, but ask again soon: a lease
		// may be released early, which is not announced.
		next.deadline = now.Add(min(rep.Wait, maxProbeWait))
	case rep.State == HalfOpen && rep.Generation == prev.gen:
		next.deadline = prev.deadline
	}
	b.view = next
	// The event is the last transition as the store recorded it; when this
	// instance missed some, they fold into it. A breaker created anew (its
	// keys expired or Redis lost them) records no transition: the change is
	// then from the state this instance saw. A new instance announces only
	// a breaker it finds not closed.
	from := rep.From
	if prev.known && from == rep.State {
		from = prev.state
	}
	changed := rep.Generation != prev.gen && from != rep.State && (prev.known || rep.State != Closed)
	b.mu.Unlock()
	if changed {
		e := Event{Kind: StateChanged, Name: b.name, From: from, To: rep.State,
			Generation: rep.Generation, Reason: rep.Reason, Counts: rep.Counts,
			Instance: rep.By, Local: rep.By == b.s.Instance, Fallback: b.s.Fallback}
		if rep.State == Open {
			e.NextProbeIn = rep.Wait
		}
		b.emit(e)
	}
	return next
}

// storeFailed puts the breaker on its fallback; unreported outcomes are
// counted under the same lock, so that none is lost to a concurrent recovery.
func (b *Breaker) storeFailed(err error, unreported uint64) {
	b.mu.Lock()
	was := b.degraded
	b.degraded = true
	b.unreported += unreported
	b.mu.Unlock()
	if !was {
		b.emit(Event{Kind: StoreUnavailable, Name: b.name, Err: err, Fallback: b.s.Fallback,
			From: b.State(), To: b.State()})
	}
}

func (b *Breaker) storeAnswered() {
	b.mu.Lock()
	was := b.degraded
	b.degraded = false
	n := b.unreported
	b.unreported = 0
	st := b.view.state
	orphans := b.orphans
	b.orphans = nil
	if len(orphans) > 0 && !b.closed {
		b.wg.Add(1)
		go b.release(orphans)
	}
	b.mu.Unlock()
	if was {
		b.emit(Event{Kind: StoreRecovered, Name: b.name, Fallback: b.s.Fallback, Unreported: n,
			From: st, To: st})
	}
}

// maxProbeWait bounds how long a half-open breaker rejects calls locally
// before it asks the store again.
const maxProbeWait = time.Second

// maxOrphans bounds the lease ids kept for release; past it, leases expire.
const maxOrphans = 64

// orphan keeps the id of a lease that a failed Acquire may have been granted.
func (b *Breaker) orphan(lease string) {
	b.mu.Lock()
	if len(b.orphans) < maxOrphans {
		b.orphans = append(b.orphans, lease)
	}
	b.mu.Unlock()
}

// release frees leases that no caller holds (an ignored outcome releases a
// lease and counts nothing).
func (b *Breaker) release(leases []string) {
	defer b.wg.Done()
	for _, lease := range leases {
		req := b.request()
		req.Lease = lease
		req.Results = []Result{{Outcome: Ignored}}
		if _, err := b.store.Record(b.ctx, req); err != nil {
			return // the lease expires in ProbeLease
		}
	}
}

// notified is called by the store's subscription for every announced
// transition (generation > 0) and whenever announcements may have been
// missed (0). It re-reads the state from the store, never trusting the
// announcement itself; concurrent notifications fold into one re-read.
func (b *Breaker) notified(gen int64) {
	b.mu.Lock()
	if b.closed || gen > 0 && b.view.known && gen <= b.view.gen {
		b.mu.Unlock()
		return
	}
	if b.refreshing {
		b.refreshAgain = true
		b.mu.Unlock()
		return
	}
	b.refreshing = true
	b.wg.Add(1)
	b.mu.Unlock()
	go b.refresh()
}

// refreshRetry is how long a failed re-read waits before it tries again.
const refreshRetry = time.Second

func (b *Breaker) refresh() {
	defer b.wg.Done()
	for {
		rep, err := b.store.Read(b.ctx, b.request())
		switch {
		case err == nil:
			b.storeAnswered()
			b.adopt(rep, b.clock.Now())
		case b.ctx.Err() == nil:
			// The announcement or resubscription said the state changed:
			// keep trying, so that this instance catches up even if it
			// makes no call.
			b.storeFailed(err, 0)
			select {
			case <-b.ctx.Done():
			case <-time.After(refreshRetry):
				b.mu.Lock()
				b.refreshAgain = true
				b.mu.Unlock()
			}
		}
		b.mu.Lock()
		if !b.refreshAgain || b.closed {
			b.refreshing = false
			b.mu.Unlock()
			return
		}
		b.refreshAgain = false
		b.mu.Unlock()
	}
}

// Close stops following the shared state and waits for background
// re-reads to end. The shared state is untouched; later calls of Allow
// return ErrClosed.
func (b *Breaker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.unwatch()
	b.cancel()
	b.wg.Wait()
	return nil
}
