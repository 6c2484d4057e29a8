package transport_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/retry"
	"github.com/breakwater-go/breakwater/transport"
)

// The floats a Transport takes (its breakers' settings, its retry policy)
// reject NaN and both infinities, naming the field.
func TestNewRejectsNonFiniteFloats(t *testing.T) {
	st := newStore(t)
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		tests := []struct {
			field string
			opts  transport.Options
		}{
			{"FailureRate", transport.Options{Store: st, Settings: breaker.Settings{FailureRate: v}}},
			{"SlowCallRate", transport.Options{Store: st, Settings: breaker.Settings{SlowCallRate: v, SlowCallDuration: time.Second}}},
			{"OpenJitter", transport.Options{Store: st, Settings: breaker.Settings{OpenJitter: v}}},
			{"Multiplier", transport.Options{Store: st, Retry: retry.Policy{Multiplier: v}}},
			{"RateLimitFactor", transport.Options{Store: st, Retry: retry.Policy{RateLimitFactor: v}}},
		}
		for _, tt := range tests {
			tr, err := transport.New(tt.opts)
			if err == nil {
				tr.Close()
				t.Errorf("%s = %v: New returned no error, want one naming the field", tt.field, v)
				continue
			}
			if !errors.Is(err, transport.ErrInvalidOptions) || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("%s = %v: got %v, want an error matching ErrInvalidOptions naming %s", tt.field, v, err, tt.field)
			}
		}
	}
}
