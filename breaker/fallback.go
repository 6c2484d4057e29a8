package breaker

import (
	"sync"
	"sync/atomic"

	circuitbreaker "github.com/mercari/go-circuitbreaker"
)

// The fallback, made visible. While the store is unreachable a breaker
// decides alone, as Settings.Fallback says: Decider tells which way, State
// reports the state that decides calls, and the transitions of the local
// breaker (FallbackLocal) are events like the shared state's, with Decider
// DecideLocal. Entering the fallback (StoreUnavailable) and leaving it
// (StoreRecovered) are transitions too: their From and To are the states
// that decided before and after.
//
// The local breaker tells of its transitions through a hook that runs
// under its own lock (and, when a batch drained for the store feeds it,
// under the breaker's and the hub's). The hook only notes the state and
// queues the event; every event of a breaker goes through that queue, and
// one goroutine at a time empties it, outside every lock, so that
// listeners hear a breaker's events one at a time and in order.

// Decider says what decides a breaker's calls: the shared state, or, while
// the store is unreachable, the fallback that Settings.Fallback chose.
type Decider int

const (
	// DecideShared: the shared state decides, as this instance sees it.
	DecideShared Decider = iota
	// DecideLocal: the store is unreachable and a local breaker decides,
	// fed by this instance's outcomes alone (FallbackLocal).
	DecideLocal
	// DecideFailOpen: the store is unreachable and every call is admitted
	// (FallbackOpen).
	DecideFailOpen
	// DecideFailClosed: the store is unreachable and every call is
	// rejected (FallbackClosed).
	DecideFailClosed
)

var deciderNames = [...]string{"shared", "local", "fail-open", "fail-closed"}

// String returns "shared", "local", "fail-open" or "fail-closed".
func (d Decider) String() string {
	if d < 0 || int(d) >= len(deciderNames) {
		return "Decider(?)"
	}
	return deciderNames[d]
}

// deciders maps each Fallback to the Decider it makes.
var deciders = [...]Decider{FallbackLocal: DecideLocal, FallbackOpen: DecideFailOpen, FallbackClosed: DecideFailClosed}

// Decider returns what decides b's calls now: DecideShared while the store
// answers, else the fallback's Decider. It does no I/O and takes no lock.
func (b *Breaker) Decider() Decider {
	if !b.degraded.Load() {
		return DecideShared
	}
	return deciders[b.s.Fallback]
}

// State returns the state that decides b's calls now, without I/O: this
// instance's view of the shared state while the store answers. While the
// store is unreachable it is the fallback's: the local breaker's Closed,
// Open or HalfOpen (FallbackLocal), Disabled when every call is admitted
// (FallbackOpen), Open when every call is rejected (FallbackClosed);
// Decider tells which. Snapshot asks the store for the shared state.
func (b *Breaker) State() State {
	if b.degraded.Load() {
		switch b.s.Fallback {
		case FallbackLocal:
			return State(b.events.local.Load())
		case FallbackOpen:
			return Disabled
		case FallbackClosed:
			return Open
		}
	}
	return b.v.Load().state
}

// eventQueue holds a breaker's events on their way to its listeners, and
// the local breaker's state.
type eventQueue struct {
	local   atomic.Int32 // the local breaker's state, a State, kept by its hook
	feeding atomic.Int32 // callers feeding the local breaker, which drain after

	mu       sync.Mutex // a leaf lock, taken under the local breaker's own
	queue    []Event
	spare    []Event // an emptied queue, for the next events
	draining bool    // a goroutine is handing queue to the listeners
}

// emit hands e to b's listeners, after the events queued before it.
func (b *Breaker) emit(e Event) {
	q := &b.events
	q.mu.Lock()
	q.queue = append(q.queue, e)
	q.mu.Unlock()
	b.drain()
}

// drain hands the queued events to the listeners, unless another goroutine
// is doing so (it then hands them over too).
func (b *Breaker) drain() {
	q := &b.events
	q.mu.Lock()
	if q.draining || len(q.queue) == 0 {
		q.mu.Unlock()
		return
	}
	q.draining = true
	done := false
	defer func() {
		if !done { // a listener panicked: let the next caller drain
			q.mu.Lock()
			q.draining = false
			q.mu.Unlock()
		}
	}()
	for len(q.queue) > 0 {
		es := q.queue
		q.queue, q.spare = q.spare, nil
		q.mu.Unlock()
		fns := b.listening()
		for _, e := range es {
			for _, l := range fns {
				l.fn(e)
			}
		}
		clear(es)
		q.mu.Lock()
		q.spare = es[:0]
	}
	q.draining = false
	done = true
	q.mu.Unlock()
}

// listener is a function Listen registered.
type listener struct {
	id int
	fn func(Event)
}

// listening returns b's listeners, in the order they were registered (a
// slice that is never changed).
func (b *Breaker) listening() []listener {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.listeners
}

// localChanged is the local breaker's hook, called under its lock on every
// transition. While the local breaker decides, the transition is an event.
func (b *Breaker) localChanged(from, to circuitbreaker.State) {
	f, t := localState(from), localState(to)
	if f == t {
		return
	}
	q := &b.events
	q.mu.Lock()
	q.local.Store(int32(t))
	deciding := b.degraded.Load() && b.s.Fallback == FallbackLocal && !b.closed.Load()
	if deciding {
		e := Event{Kind: StateChanged, Name: b.name, From: f, To: t, Reason: b.localReason(f, t),
			Instance: b.s.Instance, Local: true, Fallback: b.s.Fallback, Decider: DecideLocal}
		if t == Open {
			e.NextProbeIn = b.s.OpenDuration
		}
		q.queue = append(q.queue, e)
	}
	q.mu.Unlock()
	if deciding && q.feeding.Load() == 0 {
		// Nobody drains after this hook: it runs on the local breaker's
		// timer, or under the breaker's locks (a batch drained for the
		// store fed it). The event goes from another goroutine.
		go b.drain()
	}
}

// localState maps a state of the local breaker to a State.
func localState(s circuitbreaker.State) State {
	switch s {
	case circuitbreaker.StateOpen:
		return Open
	case circuitbreaker.StateHalfOpen:
		return HalfOpen
	}
	return Closed
}

// localReason says why the local breaker went from f to t, in the words of
// the shared state's transitions.
func (b *Breaker) localReason(f, t State) string {
	switch {
	case f == Closed && t == Open && b.s.ConsecutiveFailures != Off:
		return "consecutive_failures"
	case f == Closed && t == Open && b.s.FailureRate == 0:
		return "slow_call_rate"
	case f == Closed && t == Open:
		return "failure_rate"
	case t == HalfOpen:
		return "open_timeout"
	case f == HalfOpen && t == Open:
		return "probe_failed"
	case f == HalfOpen && t == Closed:
		return "probes_succeeded"
	}
	return "reset"
}

// storeFailed puts the breaker on its fallback.
func (b *Breaker) storeFailed(err error) {
	if b.degraded.Load() {
		return
	}
	q := &b.events
	q.mu.Lock()
	if b.degraded.Swap(true) {
		q.mu.Unlock()
		return
	}
	q.queue = append(q.queue, Event{Kind: StoreUnavailable, Name: b.name, Err: err, Fallback: b.s.Fallback,
		From: b.v.Load().state, To: b.State(), Decider: b.Decider()})
	q.mu.Unlock()
	b.drain()
}

// storeAnswered takes the breaker off its fallback.
func (b *Breaker) storeAnswered() {
	if !b.degraded.Load() {
		return
	}
	b.mu.Lock()
	n := b.pendingCount()
	b.mu.Unlock()
	q := &b.events
	q.mu.Lock()
	from := b.State()
	if !b.degraded.CompareAndSwap(true, false) {
		q.mu.Unlock()
		return
	}
	q.queue = append(q.queue, Event{Kind: StoreRecovered, Name: b.name, Fallback: b.s.Fallback, Unreported: n,
		From: from, To: b.v.Load().state, Decider: DecideShared})
	q.mu.Unlock()
	b.drain()
}
