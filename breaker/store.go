package breaker

import (
	"context"
	"time"
)

// Store keeps the shared state of breakers. Package store implements it on
// Redis; every method that changes state does so atomically, in one step.
type Store interface {
	// Acquire asks whether a call may run now and grants a probe lease
	// (Request.Lease) when the breaker is half-open.
	Acquire(ctx context.Context, req Request) (Reply, error)
	// Record counts Request.Results, admitted under Request.Generation, and
	// releases Request.Lease.
	Record(ctx context.Context, req Request) (Reply, error)
	// Force carries out Request.Command for the whole fleet.
	Force(ctx context.Context, req Request) (Reply, error)
	// Read returns the breaker's shared state.
	Read(ctx context.Context, req Request) (Reply, error)
	// Watch calls notify with the generation of every transition of the
	// named breaker that is announced, and with 0 whenever announcements may
	// have been missed (after a new subscription), until cancel is called.
	// notify must not block.
	Watch(name string, notify func(generation int64)) (cancel func())
}

// Request is what a Breaker asks of its Store.
type Request struct {
	Name       string
	Instance   string    // the asking instance
	Settings   *Settings // with defaults applied
	Lease      string    // Acquire: the lease id to grant; Record: the lease to release
	Generation int64     // Record: the generation the results were admitted under
	Results    []Result  // Record: outcomes in the order they happened
	Command    Command   // Force
	Random     float64   // a number in [0, 1) for the open duration's jitter
	// OpenFor, with CommandOpen, opens the breaker in the ordinary Open
	// state for this long (at least 1ms), after which it half-opens by
	// itself; zero holds it ForcedOpen.
	OpenFor time.Duration
}

// Result is one call's outcome as sent to the store.
type Result struct {
	Outcome Outcome
	Slow    bool // the call took at least Settings.SlowCallDuration
}

// Command is an operator's command for the whole fleet.
type Command int

const (
	// CommandOpen holds the breaker open.
	CommandOpen Command = iota + 1
	// CommandClose closes the breaker.
	CommandClose
	// CommandDisable lets every call through.
	CommandDisable
	// CommandReset clears all counts and closes the breaker.
	CommandReset
)

// Verdict is a store's answer to a request.
type Verdict string

// Verdicts. Acquire answers VerdictAllow, VerdictProbe or VerdictReject;
// Record answers VerdictCounted, VerdictStale or VerdictPartial (some results
// were stale); Force and Read answer VerdictOK.
const (
	VerdictAllow   Verdict = "allow"
	VerdictProbe   Verdict = "probe"
	VerdictReject  Verdict = "reject"
	VerdictCounted Verdict = "counted"
	VerdictStale   Verdict = "stale"
	VerdictPartial Verdict = "partial"
	VerdictOK      Verdict = "ok"
)

// Reply is the shared state of a breaker as a store saw it while answering.
type Reply struct {
	Verdict    Verdict
	State      State
	Generation int64
	// Wait is how long until a call may be admitted: until the next probe
	// when open, until a probe lease expires when a half-open breaker
	// rejects; negative when forced open.
	Wait    time.Duration
	From    State         // the state before the last transition
	Reason  string        // why the last transition happened
	By      string        // the instance whose request made it
	InState time.Duration // time since the last transition
	Lease   string        // the lease granted (VerdictProbe)
	Changed bool          // this request made a transition
	Counts  Counts
}

// Counts are a breaker's fleet-wide counts.
type Counts struct {
	// Successes and Failures counted in the current generation.
	Successes, Failures uint64
	// ConsecutiveFailures in the closed state, across the fleet.
	ConsecutiveFailures uint64
	// ProbeSuccesses so far in the half-open state.
	ProbeSuccesses uint64
	// WindowCalls, WindowFailures and WindowSlowCalls in the sliding window,
	// kept while a rate policy (FailureRate, SlowCallRate) is on.
	WindowCalls, WindowFailures, WindowSlowCalls uint64
	// TroubledInstances is how many distinct instances reported a failure
	// or a slow call in the window, kept while Quorum is above 1.
	TroubledInstances uint64
	// Totals since the breaker was created or reset, whatever the generation.
	TotalSuccesses, TotalFailures, TotalSlowCalls uint64
	// TotalStale is how many outcomes arrived after their generation ended;
	// they are in the totals but were not applied to a newer state.
	TotalStale uint64
	// Trips is how many times in a row the breaker has opened without
	// closing in between; it lengthens the open duration.
	Trips uint64
	// PreviousFailures is how many failures were counted in the generation
	// before this one: for a breaker that just opened, the failures that
	// tripped it.
	PreviousFailures uint64
}
