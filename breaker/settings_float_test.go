package breaker_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
)

// Every float of Settings rejects NaN and both infinities, naming the field:
// NaN compares false with everything, so a range check alone lets it pass
// and a breaker with FailureRate NaN could never trip.
func TestValidateRejectsNonFiniteFloats(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		field string
		s     breaker.Settings
	}{
		{"FailureRate", breaker.Settings{FailureRate: nan}},
		{"FailureRate", breaker.Settings{FailureRate: inf}},
		{"FailureRate", breaker.Settings{FailureRate: -inf}},
		{"SlowCallRate", breaker.Settings{SlowCallRate: nan, SlowCallDuration: time.Second}},
		{"SlowCallRate", breaker.Settings{SlowCallRate: inf, SlowCallDuration: time.Second}},
		{"SlowCallRate", breaker.Settings{SlowCallRate: -inf, SlowCallDuration: time.Second}},
		{"OpenJitter", breaker.Settings{OpenJitter: nan}},
		{"OpenJitter", breaker.Settings{OpenJitter: inf}},
		{"OpenJitter", breaker.Settings{OpenJitter: -inf}},
	}
	for _, tt := range tests {
		err := tt.s.Validate()
		if err == nil {
			t.Errorf("Validate(%+v) = nil, want an error naming %s", tt.s, tt.field)
			continue
		}
		var se *breaker.SettingsError
		if !errors.As(err, &se) || se.Field != tt.field || !errors.Is(err, breaker.ErrInvalidSettings) {
			t.Errorf("Validate(%+v) = %v, want a SettingsError for %s matching ErrInvalidSettings", tt.s, err, tt.field)
		}
		if !strings.Contains(err.Error(), tt.field) {
			t.Errorf("message %q does not name %s", err, tt.field)
		}
	}
	// The edges of the ranges stay valid.
	for _, s := range []breaker.Settings{
		{FailureRate: 1}, {SlowCallRate: 1, SlowCallDuration: time.Second}, {OpenJitter: 0.999},
	} {
		if err := s.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v, want nil", s, err)
		}
	}
}
