package breaker

import (
	"context"
	"errors"
	"time"

	"github.com/breakwater-go/breakwater/breaker/backend"
)

// Observer is told what a breaker does, call by call, for metrics (package
// github.com/breakwater-go/breakwater/otel implements one on OpenTelemetry).
// Set it as Settings.Observer; one Observer may serve many breakers (every
// host's breaker of a transport, say): each report names its breaker.
//
// Transitions and the fallback are reported as Events: Attached may Listen
// to the breaker. Methods are called synchronously on the caller's
// goroutine, possibly concurrently; they must be quick and must not call
// back into the breaker, except Listen, State and Name. Implementations
// should embed NopObserver, so that methods added later have a default.
type Observer interface {
	// Attached is called by New with the new breaker before New returns;
	// Detached by the breaker's Close.
	Attached(b *Breaker)
	Detached(b *Breaker)
	// CallEnded is called once for every admitted call, when it ends.
	CallEnded(CallInfo)
	// CallRejected is called for every call the breaker rejects: by Allow
	// (and so Execute), and by Check, which a retry policy asks before
	// each attempt and which refuses the attempt without calling Allow.
	CallRejected(Rejection)
	// StoreCalled is called after every call the breaker makes to its
	// store, with how long it took and its error.
	StoreCalled(StoreCall)
	// BatchFlushed is called after every batch of outcomes sent to the
	// store, when outcomes are reported in batches: once it is counted, or
	// with the error that kept it from the store (it is sent again).
	BatchFlushed(FlushInfo)
}

// NopObserver is an Observer that does nothing; embed it in an Observer to
// implement only some methods.
type NopObserver struct{}

func (NopObserver) Attached(*Breaker)      {}
func (NopObserver) Detached(*Breaker)      {}
func (NopObserver) CallEnded(CallInfo)     {}
func (NopObserver) CallRejected(Rejection) {}
func (NopObserver) StoreCalled(StoreCall)  {}
func (NopObserver) BatchFlushed(FlushInfo) {}

// CallInfo is an admitted call's end, for Observer.CallEnded.
type CallInfo struct {
	Name    string
	Outcome Outcome
	// Slow is set when the call took at least Settings.SlowCallDuration.
	Slow     bool
	Duration time.Duration
	// Probe is set when the call was a half-open probe.
	Probe bool
	// Local is set when the store was unreachable as the call ended: the
	// local fallback counted it.
	Local bool
}

// RejectReason says why a call was rejected.
type RejectReason int

const (
	// RejectOpen: the breaker is open.
	RejectOpen RejectReason = iota
	// RejectForcedOpen: an operator holds the breaker open.
	RejectForcedOpen
	// RejectHalfOpenFull: the breaker is half-open and every probe place
	// of the fleet is taken.
	RejectHalfOpenFull
	// RejectLocal: the store is unreachable and the fallback rejected the
	// call (Fallback says how).
	RejectLocal
)

var rejectReasonNames = [...]string{"open", "forced_open", "half_open_full", "local_fallback"}

// String returns "open", "forced_open", "half_open_full" or "local_fallback".
func (r RejectReason) String() string {
	if r < 0 || int(r) >= len(rejectReasonNames) {
		return "RejectReason(?)"
	}
	return rejectReasonNames[r]
}

// Rejection is a rejected call, for Observer.CallRejected.
type Rejection struct {
	Name   string
	Reason RejectReason
	// State is the state the breaker was in, as this instance saw it.
	State State
}

// StoreCall is one call of a breaker to its store, for Observer.StoreCalled.
type StoreCall struct {
	Name string
	// Op is the Store method: "acquire", "record", "force" or "read".
	Op       string
	Duration time.Duration
	Err      error
}

// FlushInfo is one batch of outcomes sent to the store, for Observer.BatchFlushed.
type FlushInfo struct {
	Name string
	// Outcomes is how many outcomes the batch carried; Pending how many
	// are left waiting to be sent after it.
	Outcomes, Pending int
	// Duration is how long the store took to answer the batch (its round
	// trip, which it may share with other breakers' batches).
	Duration time.Duration
	// Age is how long before the answer the batch's first outcome
	// happened: how late the shared counts learnt of it. A batch waits up
	// to Settings.FlushInterval, less when a failure makes it urgent; more
	// means the process or the store is slow, and decisions that depend on
	// the order of several instances' outcomes (consecutive failures) wait
	// for outcomes that long.
	Age time.Duration
	// Err is the store's error when the batch was not delivered; its
	// outcomes are kept and sent again.
	Err error
}

// attach wraps the store so that the observer times its calls, starts the
// logger, and tells the observer of the new breaker. New calls it once b
// is complete.
func (b *Breaker) attach() {
	if b.s.Logger != nil {
		b.Listen(logEvent(b.s.Logger))
	}
	if o := b.s.Observer; o != nil {
		b.store = observedStore{Store: b.store, name: b.name, obs: o, clock: b.clock}
		o.Attached(b)
	}
}

// detach tells the observer that b is closed.
func (b *Breaker) detach() {
	if o := b.s.Observer; o != nil {
		o.Detached(b)
	}
}

// ended reports the end of an admitted call.
func (b *Breaker) ended(p *Permit, o Outcome, slow bool, now time.Time) {
	obs := b.s.Observer
	if obs == nil {
		return
	}
	local := b.degraded.Load()
	obs.CallEnded(CallInfo{Name: b.name, Outcome: o, Slow: slow, Duration: now.Sub(p.start),
		Probe: p.lease != "", Local: local})
}

// rejected reports a rejection, when err is one.
func (b *Breaker) rejected(err error) {
	obs := b.s.Observer
	if obs == nil {
		return
	}
	var oe *OpenError
	if !errors.As(err, &oe) {
		return // ctx's error, ErrClosed: not a rejection
	}
	r := Rejection{Name: b.name, State: oe.State, Reason: RejectOpen}
	switch {
	case oe.Local:
		r.Reason = RejectLocal
	case oe.State == ForcedOpen:
		r.Reason = RejectForcedOpen
	case oe.State == HalfOpen:
		r.Reason = RejectHalfOpenFull
	}
	obs.CallRejected(r)
}

// observedStore times every call to the store for the observer.
type observedStore struct {
	Store
	name  string
	obs   Observer
	clock Clock
}

func (s observedStore) call(op string, req backend.Request, fn func(backend.Request) (backend.Reply, error)) (backend.Reply, error) {
	start := s.clock.Now()
	rep, err := fn(req)
	s.obs.StoreCalled(StoreCall{Name: s.name, Op: op, Duration: s.clock.Now().Sub(start), Err: err})
	return rep, err
}

func (s observedStore) Acquire(ctx context.Context, req backend.Request) (backend.Reply, error) {
	return s.call("acquire", req, func(r backend.Request) (backend.Reply, error) { return s.Store.Acquire(ctx, r) })
}

func (s observedStore) Record(ctx context.Context, req backend.Request) (backend.Reply, error) {
	return s.call("record", req, func(r backend.Request) (backend.Reply, error) { return s.Store.Record(ctx, r) })
}

func (s observedStore) Force(ctx context.Context, req backend.Request) (backend.Reply, error) {
	return s.call("force", req, func(r backend.Request) (backend.Reply, error) { return s.Store.Force(ctx, r) })
}

func (s observedStore) Read(ctx context.Context, req backend.Request) (backend.Reply, error) {
	return s.call("read", req, func(r backend.Request) (backend.Reply, error) { return s.Store.Read(ctx, r) })
}

// Do times a round of ops: each op is reported as one store call.
func (s observedStore) Do(ctx context.Context, ops []backend.Op) {
	start := s.clock.Now()
	s.Store.Do(ctx, ops)
	d := s.clock.Now().Sub(start)
	for _, op := range ops {
		name := "read"
		if op.Kind == backend.OpRecord {
			name = "record"
		}
		s.obs.StoreCalled(StoreCall{Name: s.name, Op: name, Duration: d, Err: op.Err})
	}
}
