package retry

import (
	"math"
	"math/rand"
	"testing"
	"time"
)

func mustResolve(t *testing.T, p Policy) *settings {
	t.Helper()
	s, err := p.resolve()
	if err != nil {
		t.Fatalf("resolve(%+v): %v", p, err)
	}
	return s
}

// almostOne is the largest value a Rand may return.
var almostOne = math.Nextafter(1, 0)

func TestExponentialGrowthAndCap(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		want []time.Duration // exp(1), exp(2), ...
	}{
		{
			name: "defaults",
			p:    Policy{},
			want: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond},
		},
		{
			name: "multiplier 1.5",
			p:    Policy{BaseDelay: 100 * time.Millisecond, Multiplier: 1.5},
			want: []time.Duration{100 * time.Millisecond, 150 * time.Millisecond, 225 * time.Millisecond, 337500 * time.Microsecond},
		},
		{
			name: "multiplier 1 is constant",
			p:    Policy{BaseDelay: time.Second, Multiplier: 1},
			want: []time.Duration{time.Second, time.Second, time.Second},
		},
		{
			name: "capped by MaxDelay",
			p:    Policy{BaseDelay: time.Second, MaxDelay: 5 * time.Second, Multiplier: 3},
			want: []time.Duration{time.Second, 3 * time.Second, 5 * time.Second, 5 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustResolve(t, tt.p)
			for i, want := range tt.want {
				if got := s.exponential(i + 1); got != want {
					t.Errorf("exponential(%d) = %v, want %v", i+1, got, want)
				}
			}
		})
	}
}

func TestExponentialNoOverflow(t *testing.T) {
	s := mustResolve(t, Policy{BaseDelay: time.Second, MaxDelay: time.Hour, Multiplier: 10})
	for _, n := range []int{30, 64, 1000, math.MaxInt32} {
		if got := s.exponential(n); got != time.Hour {
			t.Errorf("exponential(%d) = %v, want the cap %v", n, got, time.Hour)
		}
	}
	big := mustResolve(t, Policy{BaseDelay: time.Second, MaxDelay: time.Duration(math.MaxInt64)})
	if got := big.exponential(200); got != time.Duration(math.MaxInt64) {
		t.Errorf("exponential(200) with max cap = %v, want %v", got, time.Duration(math.MaxInt64))
	}
	if got := s.exponential(0); got != time.Second {
		t.Errorf("exponential(0) = %v, want BaseDelay %v", got, time.Second)
	}
}

func TestBackoffBounds(t *testing.T) {
	const (
		base = 100 * time.Millisecond
		maxD = 3 * time.Second
	)
	rnd := rand.New(rand.NewSource(1))
	for _, j := range []Jitter{JitterNone, JitterFull, JitterEqual} {
		j := j
		t.Run(j.String(), func(t *testing.T) {
			s := mustResolve(t, Policy{BaseDelay: base, MaxDelay: maxD, Jitter: j})
			for n := 1; n <= 10; n++ {
				exp := s.exponential(n)
				var lo, hi time.Duration // inclusive lo, exclusive hi (inclusive for none)
				switch j {
				case JitterNone:
					lo, hi = exp, exp
				case JitterFull:
					lo, hi = 0, exp
				case JitterEqual:
					lo, hi = exp/2, exp
				}
				// The extremes of u reach the ends of the range.
				if got := s.backoff(n, 0, 0); got != lo {
					t.Errorf("n=%d u=0: got %v, want %v", n, got, lo)
				}
				top := s.backoff(n, 0, almostOne)
				if j == JitterNone {
					if top != hi {
						t.Errorf("n=%d u→1: got %v, want %v", n, top, hi)
					}
				} else if top >= hi || top < hi-hi/1000 {
					t.Errorf("n=%d u→1: got %v, want just under %v", n, top, hi)
				}
				for i := 0; i < 200; i++ {
					got := s.backoff(n, 0, rnd.Float64())
					if got < lo || got > hi || (j != JitterNone && got == hi) {
						t.Fatalf("n=%d: got %v, want in [%v, %v)", n, got, lo, hi)
					}
				}
			}
		})
	}
}

func TestBackoffMidpoints(t *testing.T) {
	s := func(j Jitter) *settings { return mustResolve(t, Policy{Jitter: j}) }
	tests := []struct {
		j    Jitter
		n    int
		u    float64
		want time.Duration
	}{
		{JitterFull, 1, 0.5, 50 * time.Millisecond},
		{JitterFull, 3, 0.25, 100 * time.Millisecond},
		{JitterEqual, 1, 0.5, 75 * time.Millisecond},
		{JitterEqual, 2, 0, 100 * time.Millisecond},
		{JitterNone, 3, 0.9, 400 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := s(tt.j).backoff(tt.n, 0, tt.u); got != tt.want {
			t.Errorf("%v backoff(n=%d, u=%v) = %v, want %v", tt.j, tt.n, tt.u, got, tt.want)
		}
	}
}

func TestBackoffDecorrelated(t *testing.T) {
	const (
		base = 100 * time.Millisecond
		maxD = 2 * time.Second
	)
	s := mustResolve(t, Policy{BaseDelay: base, MaxDelay: maxD, Jitter: JitterDecorrelated})
	tests := []struct {
		prev time.Duration
		u    float64
		want time.Duration
	}{
		{0, 0, base},                     // first wait: [base, 3×base)
		{0, 0.5, 200 * time.Millisecond}, // base + 0.5×(300ms−100ms)
		{200 * time.Millisecond, 0.5, 350 * time.Millisecond}, // 100 + 0.5×(600−100)
		{time.Second, 0, base},                                // always at least base
		{time.Second, almostOne, maxD},                        // 3s capped at 2s
		{time.Hour, 0.5, maxD},                                // huge prev stays capped
		{10 * time.Millisecond, 0, base},                      // prev below base counts as base
	}
	for _, tt := range tests {
		if got := s.backoff(7, tt.prev, tt.u); got != tt.want {
			t.Errorf("backoff(prev=%v, u=%v) = %v, want %v", tt.prev, tt.u, got, tt.want)
		}
	}

	// Bounds over a random walk: each wait is in [base, min(max, 3×prev)).
	rnd := rand.New(rand.NewSource(2))
	prev := time.Duration(0)
	for i := 0; i < 1000; i++ {
		got := s.backoff(i+1, prev, rnd.Float64())
		p := max(prev, base)
		hi := min(maxD, 3*p)
		if got < base || got > hi || (got == hi && hi != maxD) {
			t.Fatalf("step %d prev=%v: got %v, want in [%v, %v)", i, prev, got, base, hi)
		}
		prev = got
	}

	// Multiplier sets the growth: prev×(Multiplier+1).
	s15 := mustResolve(t, Policy{BaseDelay: base, Multiplier: 1.5, Jitter: JitterDecorrelated})
	if got, want := s15.backoff(2, time.Second, almostOne), 2500*time.Millisecond; got < want-time.Microsecond || got >= want {
		t.Errorf("Multiplier 1.5 upper bound: got %v, want just under %v", got, want)
	}
}

func TestBackoffClampsRand(t *testing.T) {
	s := mustResolve(t, Policy{Jitter: JitterFull})
	tests := []struct {
		u    float64
		want time.Duration
	}{
		{-1, 0},
		{math.NaN(), 0},
		{math.Inf(-1), 0},
	}
	for _, tt := range tests {
		if got := s.backoff(1, 0, tt.u); got != tt.want {
			t.Errorf("backoff(u=%v) = %v, want %v", tt.u, got, tt.want)
		}
	}
	for _, u := range []float64{1, 2, math.Inf(1)} {
		if got := s.backoff(1, 0, u); got >= 100*time.Millisecond || got < 99*time.Millisecond {
			t.Errorf("backoff(u=%v) = %v, want just under 100ms", u, got)
		}
	}
}

func TestScale(t *testing.T) {
	tests := []struct {
		d     time.Duration
		f     float64
		limit time.Duration
		want  time.Duration
	}{
		{100 * time.Millisecond, 4, 10 * time.Second, 400 * time.Millisecond},
		{5 * time.Second, 4, 10 * time.Second, 10 * time.Second},
		{0, 4, time.Second, 0},
		{time.Duration(math.MaxInt64), 4, time.Hour, time.Hour},
	}
	for _, tt := range tests {
		if got := scale(tt.d, tt.f, tt.limit); got != tt.want {
			t.Errorf("scale(%v, %v, %v) = %v, want %v", tt.d, tt.f, tt.limit, got, tt.want)
		}
	}
}
