package backend

import "fmt"

// State is a breaker's shared state as a store keeps it. Its values are
// those of breaker.State.
type State int

const (
	// Closed lets calls through and counts their outcomes.
	Closed State = iota
	// Open rejects calls until the open duration is over.
	Open
	// HalfOpen lets a limited number of probe calls through.
	HalfOpen
	// ForcedOpen rejects every call until an operator closes or resets the breaker.
	ForcedOpen
	// Disabled lets every call through and never trips.
	Disabled
)

var stateNames = [...]string{"closed", "open", "half-open", "forced-open", "disabled"}

// String returns the state's name: "closed", "open", "half-open",
// "forced-open" or "disabled".
func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("State(%d)", int(s))
	}
	return stateNames[s]
}

// Counts are a breaker's fleet-wide counts. Its fields are those of
// breaker.Counts, which converts from it.
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
