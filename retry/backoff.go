package retry

import (
	"math"
	"math/rand"
	"time"
)

// defaultRand is the default jitter source; math/rand's top-level functions
// are safe for concurrent use and seeded at start-up.
func defaultRand() float64 { return rand.Float64() }

// unit clamps a random number into [0, 1); NaN becomes 0.
func unit(u float64) float64 {
	switch {
	case !(u >= 0): // negative or NaN
		return 0
	case u >= 1:
		return math.Nextafter(1, 0)
	default:
		return u
	}
}

// backoff returns the jittered wait after failed attempt n (n >= 1), before
// any rate-limit factor or Retry-After. prev is the value backoff returned for
// the previous attempt (0 before the first); only JitterDecorrelated uses it.
// u is a random number in [0, 1). backoff is a pure function of its inputs.
func (s *settings) backoff(n int, prev time.Duration, u float64) time.Duration {
	u = unit(u)
	if s.Jitter == JitterDecorrelated {
		if prev < s.BaseDelay {
			prev = s.BaseDelay
		}
		hi := float64(prev) * (s.Multiplier + 1)
		base := float64(s.BaseDelay)
		return capped(base+u*(hi-base), s.MaxDelay)
	}
	exp := s.exponential(n)
	switch s.Jitter {
	case JitterNone:
		return exp
	case JitterEqual:
		return exp/2 + time.Duration(u*float64(exp-exp/2))
	default: // JitterFull
		return time.Duration(u * float64(exp))
	}
}

// exponential returns min(MaxDelay, BaseDelay × Multiplier^(n-1)).
func (s *settings) exponential(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	return capped(float64(s.BaseDelay)*math.Pow(s.Multiplier, float64(n-1)), s.MaxDelay)
}

// capped converts d to a Duration no larger than limit, safe against values
// beyond the range of Duration (including +Inf).
func capped(d float64, limit time.Duration) time.Duration {
	if !(d < float64(limit)) { // also catches NaN
		return limit
	}
	if d < 0 {
		return 0
	}
	return time.Duration(d)
}

// scale multiplies d by f, capped at limit.
func scale(d time.Duration, f float64, limit time.Duration) time.Duration {
	return capped(float64(d)*f, limit)
}
