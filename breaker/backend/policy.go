package backend

import "time"

// Policy is what a store needs of a breaker's settings (breaker.Settings),
// with their defaults applied: when it trips, how long it stays open, and
// how it probes. A breaker makes its Policy once and sends the same one with
// every Request; a store must not change it.
type Policy struct {
	// ConsecutiveFailures trips the breaker after this many failures in a
	// row across the fleet (0: off).
	ConsecutiveFailures int
	// FailureRate trips the breaker when at least this fraction of the
	// calls in the window failed (0: off).
	FailureRate float64
	// SlowCallRate trips the breaker when at least this fraction of the
	// calls in the window were slow (0: off).
	SlowCallRate float64
	// MinimumCalls is how many calls the window must hold before a rate
	// policy may trip.
	MinimumCalls int
	// Window is the length of the sliding window of the rate policies and
	// of the quorum, and WindowBuckets how many buckets it slides by.
	Window        time.Duration
	WindowBuckets int
	// Quorum is how many distinct instances must have reported a failure
	// or a slow call for the breaker to trip (1: any instance).
	Quorum int
	// OpenDuration is how long the breaker stays open before a probe;
	// MaxOpenDuration bounds it as it doubles with each trip in a row
	// (equal to OpenDuration: no growth).
	OpenDuration, MaxOpenDuration time.Duration
	// OpenJitter varies each open duration by up to this fraction either
	// way (0 <= j < 1), drawn from Request.Random.
	OpenJitter float64
	// MaxProbes is how many probe leases the half-open breaker grants at
	// once across the fleet, and ProbeSuccesses how many successful probes
	// close it.
	MaxProbes, ProbeSuccesses int
	// ProbeLease is how long a probe lease holds its place unless released.
	ProbeLease time.Duration
}
