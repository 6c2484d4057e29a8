package retry

// Fuzz targets for what package retry parses and validates. `go test` runs
// the seed corpora (testdata/fuzz/<FuzzName>/); `make fuzz` explores.

import (
	"errors"
	"math"
	"testing"
	"time"
)

func FuzzParseRetryAfter(f *testing.F) {
	f.Add("120", int64(0))
	f.Add("Wed, 21 Oct 2015 07:28:00 GMT", int64(1445412000))
	f.Fuzz(func(t *testing.T, value string, now int64) {
		d, ok := ParseRetryAfter(value, time.Unix(now, 0))
		if !ok {
			if d != 0 {
				t.Fatalf("ParseRetryAfter(%q) = %v, false: want 0 when not ok", value, d)
			}
			return
		}
		if d < 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v, want a wait >= 0", value, d)
		}
	})
}

func FuzzPolicyValidate(f *testing.F) {
	f.Add(3, int64(0), int64(100*time.Millisecond), int64(10*time.Second), 2.0, 0, 4.0, false)
	f.Fuzz(func(t *testing.T, attempts int, elapsed, base, maxDelay int64, mult float64, jitter int, rlf float64, wait bool) {
		p := Policy{MaxAttempts: attempts, MaxElapsed: time.Duration(elapsed), BaseDelay: time.Duration(base),
			MaxDelay: time.Duration(maxDelay), Multiplier: mult, Jitter: Jitter(jitter), RateLimitFactor: rlf,
			WaitForGate: wait}
		s, err := p.resolve()
		if err != nil {
			var pe *PolicyError
			if !errors.As(err, &pe) || pe.Field == "" {
				t.Fatalf("Validate() = %v, want a PolicyError naming a field", err)
			}
			return
		}
		if math.IsNaN(s.Multiplier) || math.IsInf(s.Multiplier, 0) || s.Multiplier < 1 ||
			math.IsNaN(s.RateLimitFactor) || math.IsInf(s.RateLimitFactor, 0) || s.RateLimitFactor < 1 ||
			s.MaxAttempts < 1 || s.BaseDelay < 0 || s.BaseDelay > s.MaxDelay {
			t.Fatalf("resolve accepted %+v", s.Policy)
		}
		// The waits it computes stay within [0, MaxDelay].
		for n := 1; n <= 3; n++ {
			if d := s.backoff(n, s.BaseDelay, 0.5); d < 0 || d > s.MaxDelay {
				t.Fatalf("backoff(%d) = %v, want within [0, %v]", n, d, s.MaxDelay)
			}
		}
	})
}
