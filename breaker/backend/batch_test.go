package backend_test

import (
	"math/rand"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker/backend"
)

func TestBatchAdd(t *testing.T) {
	// F F S F S F F s(slow) f(slow)
	var b backend.Batch
	for _, c := range "FFSFSFFsf" {
		b.Add(c == 'F' || c == 'f', c == 's' || c == 'f')
	}
	want := backend.Batch{Successes: 3, Failures: 6, Slow: 2, Lead: 2, Trail: 1, Run: 2}
	if b != want {
		t.Fatalf("got %+v, want %+v", b, want)
	}
	if b.Len() != 9 {
		t.Fatalf("Len = %d, want 9", b.Len())
	}
}

// TestBatchAppend: a run of outcomes split in two batches and appended
// counts as the whole run added at once.
func TestBatchAppend(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 2000; i++ {
		outcomes := make([]bool, rng.Intn(12))
		for j := range outcomes {
			outcomes[j] = rng.Intn(3) > 0 // a failure
		}
		cut := 0
		if len(outcomes) > 0 {
			cut = rng.Intn(len(outcomes) + 1)
		}
		var whole, a, b backend.Batch
		for j, failure := range outcomes {
			whole.Add(failure, j%3 == 0)
			if j < cut {
				a.Add(failure, j%3 == 0)
			} else {
				b.Add(failure, j%3 == 0)
			}
		}
		a.Append(b)
		if a != whole {
			t.Fatalf("%v cut at %d: appended %+v, want %+v", outcomes, cut, a, whole)
		}
	}
}

// TestBatchAges: ages are kept as of when they were measured; appending a
// later batch moves the earlier one's ages to the later measurement, and
// Ages and Age give them as of any time after.
func TestBatchAges(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	// S F at t0: the success 3ms ago, the failure 1ms ago, the first
	// outcome (the success) 3ms ago.
	a := backend.Batch{Successes: 1, Failures: 1, Trail: 1, SuccessAge: 3 * ms, FailureAge: ms,
		OldestAge: 3 * ms, Measured: t0}
	// F, 1ms ago at t0+2ms: the trailing failures go on.
	b := backend.Batch{Failures: 1, Lead: 1, Trail: 1, FailureAge: ms, OldestAge: ms, Measured: t0.Add(2 * ms)}
	a.Append(b)
	want := backend.Batch{Successes: 1, Failures: 2, Trail: 2, SuccessAge: 5 * ms, FailureAge: 3 * ms,
		OldestAge: 5 * ms, Measured: t0.Add(2 * ms)}
	if a != want {
		t.Fatalf("appended %+v, want %+v", a, want)
	}
	ok, ko := a.Ages(t0.Add(10 * ms))
	if ok != 13*ms || ko != 11*ms || a.Age(t0.Add(10*ms)) != 13*ms {
		t.Fatalf("ages 8ms after the measurement: %v %v %v, want 13ms 11ms 13ms", ok, ko, a.Age(t0.Add(10*ms)))
	}
	// Unmeasured ages are as of now.
	u := backend.Batch{Successes: 1, SuccessAge: ms, OldestAge: 2 * ms}
	if ok, _ := u.Ages(t0); ok != ms || u.Age(t0) != 2*ms {
		t.Fatalf("unmeasured: %v %v, want 1ms 2ms", ok, u.Age(t0))
	}
	// An empty batch takes the ages of what is appended to it.
	var e backend.Batch
	e.Append(b)
	if e.OldestAge != ms || !e.Measured.Equal(b.Measured) {
		t.Fatalf("empty batch appended: %+v, want %+v", e, b)
	}
}
