package backend_test

import (
	"testing"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/breaker/backend"
)

// TestStateMirrorsBreaker: backend.State has breaker.State's values and names.
func TestStateMirrorsBreaker(t *testing.T) {
	pairs := []struct {
		b  backend.State
		br breaker.State
	}{
		{backend.Closed, breaker.Closed}, {backend.Open, breaker.Open}, {backend.HalfOpen, breaker.HalfOpen},
		{backend.ForcedOpen, breaker.ForcedOpen}, {backend.Disabled, breaker.Disabled}, {backend.State(7), breaker.State(7)},
	}
	for _, p := range pairs {
		if int(p.b) != int(p.br) || p.b.String() != p.br.String() {
			t.Errorf("backend %d %q, breaker %d %q", int(p.b), p.b, int(p.br), p.br)
		}
	}
	// Counts convert both ways: the same fields, in the same order.
	c := backend.Counts{Successes: 1, TotalStale: 2, PreviousFailures: 3}
	if backend.Counts(breaker.Counts(c)) != c {
		t.Error("Counts do not convert")
	}
}
