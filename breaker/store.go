package breaker

import "github.com/breakwater-go/breakwater/breaker/backend"

// Store keeps the shared state of breakers. Users pass one to New or
// NewGroup: a *store.Store (package store keeps the state in Redis), or in
// tests the store of package breakwatertest, and need nothing else of it.
// Implementers of another store read package backend, which defines the
// contract between a Breaker and its store.
type Store = backend.Store

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
