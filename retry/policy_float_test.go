package retry

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// Every float of Policy rejects NaN and both infinities, naming the field.
func TestValidateRejectsNonFiniteFloats(t *testing.T) {
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		for _, tt := range []struct {
			field string
			p     Policy
		}{
			{"Multiplier", Policy{Multiplier: v}},
			{"RateLimitFactor", Policy{RateLimitFactor: v}},
		} {
			err := tt.p.Validate()
			var pe *PolicyError
			if !errors.As(err, &pe) || pe.Field != tt.field || !errors.Is(err, ErrInvalidPolicy) {
				t.Errorf("%s = %v: Validate() = %v, want a PolicyError for %s matching ErrInvalidPolicy", tt.field, v, err, tt.field)
				continue
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("%s = %v: message %q does not name the field", tt.field, v, err)
			}
		}
	}
}
