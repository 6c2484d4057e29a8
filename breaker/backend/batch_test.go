package backend_test

import (
	"math/rand"
	"testing"

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
