package retry

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/breakwater-go/breakwater/clock"
)

// Defaults for the zero fields of a Policy.
const (
	DefaultMaxAttempts     = 3
	DefaultBaseDelay       = 100 * time.Millisecond
	DefaultMaxDelay        = 10 * time.Second
	DefaultMultiplier      = 2.0
	DefaultRateLimitFactor = 4.0
)

// Jitter selects how the wait between attempts is randomised. The variants
// other than JitterNone are the three of the well-known "Exponential Backoff
// And Jitter" analysis (AWS Architecture Blog, 2015). Below, exp(n) is
// min(MaxDelay, BaseDelay × Multiplier^(n-1)) for the wait after attempt n, and
// u is a random number in [0, 1).
type Jitter int

// The jitter variants. The zero value is JitterFull.
const (
	// JitterFull waits u × exp(n): anywhere in [0, exp(n)). It spreads a
	// fleet's retries the most and is the default.
	JitterFull Jitter = iota
	// JitterNone waits exactly exp(n).
	JitterNone
	// JitterEqual waits exp(n)/2 + u × exp(n)/2: in [exp(n)/2, exp(n)).
	JitterEqual
	// JitterDecorrelated waits min(MaxDelay, BaseDelay + u × (prev×(Multiplier+1) − BaseDelay)),
	// where prev is the previous such wait (BaseDelay before the first). With
	// the default Multiplier of 2 this is the analysis's
	// min(cap, random_between(base, sleep × 3)).
	JitterDecorrelated
)

// String returns the variant's lower-case name, such as "full".
func (j Jitter) String() string {
	switch j {
	case JitterFull:
		return "full"
	case JitterNone:
		return "none"
	case JitterEqual:
		return "equal"
	case JitterDecorrelated:
		return "decorrelated"
	default:
		return "Jitter(" + strconv.Itoa(int(j)) + ")"
	}
}

// Policy says how Do retries. The zero value is usable: every zero field
// means the documented default. A Policy is a plain value; it is safe to use
// one from many goroutines at once when its Gate, Budget, OnEvent, Retryable
// and Rand are.
type Policy struct {
	// Name identifies the operation (for example a method and URL) in
	// events and errors.
	Name string

	// MaxAttempts is the total number of attempts, the first included.
	// Default DefaultMaxAttempts (3); 1 disables retrying.
	MaxAttempts int

	// MaxElapsed bounds the time from the start of Do after which no new
	// attempt starts; Do's own backoffs are shortened to end by it, and a
	// wait an error asks for (Retry-After) that would end past it stops Do
	// at once. Attempts in flight are not interrupted: give fn a per-attempt
	// timeout, or ctx a deadline, for that. Zero means no bound. (ctx's own
	// deadline is a bound too: a wait that would end past it stops Do at
	// once.)
	MaxElapsed time.Duration

	// BaseDelay is the wait after the first attempt before jitter.
	// Default DefaultBaseDelay (100ms), or MaxDelay when that is shorter.
	BaseDelay time.Duration

	// MaxDelay caps every wait between attempts, including waits asked for
	// by Retry-After. Default DefaultMaxDelay (10s).
	MaxDelay time.Duration

	// Multiplier is the factor by which the wait grows with each attempt; at
	// least 1. Default DefaultMultiplier (2).
	Multiplier float64

	// Jitter randomises the waits. The zero value is JitterFull.
	Jitter Jitter

	// RateLimitFactor multiplies the wait (before the MaxDelay cap) after an
	// attempt that was rate limited (HTTP 429) without saying how long to
	// wait, so that a throttled dependency is given more room than one that
	// failed for another reason; at least 1. Default DefaultRateLimitFactor (4).
	RateLimitFactor float64

	// Retryable decides whether a failed attempt may be retried. Default
	// DefaultRetryable; wrap it to extend it. Errors marked with Permanent or
	// Transient are decided by the mark without calling Retryable.
	Retryable func(error) bool

	// Gate, when set, is asked before every attempt, the first included. When
	// it refuses, Do stops at once without making the attempt (see
	// WaitForGate) and returns an *Error with ReasonGate that also matches
	// the gate's error.
	Gate Gate

	// WaitForGate makes Do wait, instead of stopping, when the Gate refuses
	// and says (with a RetryAfter method on its error) when an attempt may
	// start, provided that moment falls within MaxElapsed and before ctx's
	// deadline (otherwise Do stops at once with the gate's refusal). It requires
	// MaxElapsed. Waits for the gate are not attempts and are not capped by
	// MaxDelay.
	WaitForGate bool

	// Budget, when set, limits retries across a fleet: OnRequest is called
	// once per Do, before the first attempt is made, and AllowRetry before
	// each retry; a refusal stops Do with an error matching ErrBudget.
	Budget Budget

	// OnEvent, when set, is called synchronously after every attempt and
	// every gate refusal. It must not block for long.
	OnEvent func(Event)

	// Clock measures elapsed time and the waits between attempts. Default:
	// the real clock.
	Clock Clock

	// Rand returns random numbers in [0, 1) for jitter; values outside are
	// clamped. Default: math/rand's Float64, safe for concurrent use.
	Rand func() float64
}

// Validate reports the first invalid field of p as a *PolicyError, or nil.
// Zero fields are valid: they mean their defaults.
func (p Policy) Validate() error {
	_, err := p.resolve()
	return err
}

// settings is a validated Policy with defaults applied.
type settings struct {
	Policy
	retryable func(error) bool
	rand      func() float64
}

func (p Policy) resolve() (*settings, error) {
	bad := func(field string, value any, problem string) (*settings, error) {
		return nil, &PolicyError{Field: field, Value: value, Problem: problem}
	}
	switch {
	case p.MaxAttempts < 0:
		return bad("MaxAttempts", p.MaxAttempts, "must not be negative")
	case p.MaxElapsed < 0:
		return bad("MaxElapsed", p.MaxElapsed, "must not be negative")
	case p.BaseDelay < 0:
		return bad("BaseDelay", p.BaseDelay, "must not be negative")
	case p.MaxDelay < 0:
		return bad("MaxDelay", p.MaxDelay, "must not be negative")
	case p.Multiplier != 0 && !(p.Multiplier >= 1) || math.IsInf(p.Multiplier, 0):
		return bad("Multiplier", p.Multiplier, "must be a finite number of at least 1")
	case p.RateLimitFactor != 0 && !(p.RateLimitFactor >= 1) || math.IsInf(p.RateLimitFactor, 0):
		return bad("RateLimitFactor", p.RateLimitFactor, "must be a finite number of at least 1")
	case p.Jitter < JitterFull || p.Jitter > JitterDecorrelated:
		return bad("Jitter", p.Jitter, "unknown jitter variant")
	case p.WaitForGate && p.MaxElapsed == 0:
		return bad("WaitForGate", p.WaitForGate, "needs MaxElapsed to bound the wait")
	}
	s := &settings{Policy: p, retryable: p.Retryable, rand: p.Rand}
	if s.MaxAttempts == 0 {
		s.MaxAttempts = DefaultMaxAttempts
	}
	if s.MaxDelay == 0 {
		s.MaxDelay = DefaultMaxDelay
	}
	if s.BaseDelay == 0 {
		// A MaxDelay below the default BaseDelay caps it too.
		s.BaseDelay = min(DefaultBaseDelay, s.MaxDelay)
	}
	if s.BaseDelay > s.MaxDelay {
		return bad("BaseDelay", s.BaseDelay, "exceeds MaxDelay "+s.MaxDelay.String())
	}
	if s.Multiplier == 0 {
		s.Multiplier = DefaultMultiplier
	}
	if s.RateLimitFactor == 0 {
		s.RateLimitFactor = DefaultRateLimitFactor
	}
	if s.retryable == nil {
		s.retryable = DefaultRetryable
	}
	if s.rand == nil {
		s.rand = defaultRand
	}
	return s, nil
}

// Gate is asked before every attempt; a *breaker.Breaker satisfies it.
type Gate interface {
	// Check returns nil when an attempt may start now, else the reason. When
	// the error (or one it wraps) has a method RetryAfter() time.Duration,
	// that says how long until an attempt may start (e.g. the time until the
	// breaker's next probe).
	Check(ctx context.Context) error
}

// Budget limits retries across a fleet, typically to a fraction of requests.
type Budget interface {
	// OnRequest records that a new operation starts (its first attempt). It
	// must not block.
	OnRequest()
	// AllowRetry reports whether one more retry may be made now.
	AllowRetry(ctx context.Context) bool
}

// Clock is the source of time for Do: the one clock type of every
// Breakwater package (package clock). The real clock is the default; a fake
// clock lets tests move time without sleeping.
type Clock = clock.Clock
