package breaker

import (
	"fmt"

	"github.com/breakwater-go/breakwater/breaker/backend"
)

// State is a breaker's state, shared by the fleet.
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

// String returns the state's name: "closed", "open", "half-open",
// "forced-open" or "disabled". The values are backend.State's, whose
// names they share (a store's reply converts).
func (s State) String() string { return backend.State(s).String() }

// Outcome is how a call ended, as the breaker counts it.
type Outcome int

const (
	// Success counts as a success.
	Success Outcome = iota
	// Failure counts as a failure.
	Failure
	// Ignored is not counted at all (a half-open probe lease is released).
	Ignored
)

var outcomeNames = [...]string{"success", "failure", "ignored"}

// String returns the outcome's name.
func (o Outcome) String() string {
	if o < 0 || int(o) >= len(outcomeNames) {
		return fmt.Sprintf("Outcome(%d)", int(o))
	}
	return outcomeNames[o]
}
