package retry

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		p     Policy
		field string // "" when valid
	}{
		{"zero value", Policy{}, ""},
		{"all set", Policy{MaxAttempts: 5, MaxElapsed: time.Minute, BaseDelay: time.Second, MaxDelay: time.Minute,
			Multiplier: 1.5, Jitter: JitterDecorrelated, RateLimitFactor: 2, WaitForGate: true}, ""},
		{"multiplier 1", Policy{Multiplier: 1}, ""},
		{"base equals max", Policy{BaseDelay: time.Second, MaxDelay: time.Second}, ""},
		{"MaxDelay alone below the default BaseDelay", Policy{MaxDelay: 50 * time.Millisecond}, ""},
		{"negative MaxAttempts", Policy{MaxAttempts: -1}, "MaxAttempts"},
		{"negative MaxElapsed", Policy{MaxElapsed: -time.Second}, "MaxElapsed"},
		{"negative BaseDelay", Policy{BaseDelay: -1}, "BaseDelay"},
		{"negative MaxDelay", Policy{MaxDelay: -1}, "MaxDelay"},
		{"Multiplier below 1", Policy{Multiplier: 0.5}, "Multiplier"},
		{"negative Multiplier", Policy{Multiplier: -2}, "Multiplier"},
		{"NaN Multiplier", Policy{Multiplier: math.NaN()}, "Multiplier"},
		{"infinite Multiplier", Policy{Multiplier: math.Inf(1)}, "Multiplier"},
		{"RateLimitFactor below 1", Policy{RateLimitFactor: 0.9}, "RateLimitFactor"},
		{"NaN RateLimitFactor", Policy{RateLimitFactor: math.NaN()}, "RateLimitFactor"},
		{"unknown Jitter", Policy{Jitter: Jitter(42)}, "Jitter"},
		{"negative Jitter", Policy{Jitter: -1}, "Jitter"},
		{"BaseDelay above MaxDelay", Policy{BaseDelay: 2 * time.Second, MaxDelay: time.Second}, "BaseDelay"},
		{"BaseDelay above default MaxDelay", Policy{BaseDelay: time.Minute}, "BaseDelay"},
		{"WaitForGate without MaxElapsed", Policy{WaitForGate: true}, "WaitForGate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("Validate() = %v, want a *PolicyError", err)
			}
			if pe.Field != tt.field {
				t.Errorf("Field = %q, want %q", pe.Field, tt.field)
			}
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Errorf("errors.Is(%v, ErrInvalidPolicy) = false, want true", err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "retry: invalid policy: "+tt.field+" ") {
				t.Errorf("message %q does not name the field %s", msg, tt.field)
			}
		})
	}
}

func TestResolveDefaults(t *testing.T) {
	s := mustResolve(t, Policy{})
	if s.MaxAttempts != 3 || s.BaseDelay != 100*time.Millisecond || s.MaxDelay != 10*time.Second ||
		s.Multiplier != 2 || s.RateLimitFactor != 4 || s.Jitter != JitterFull || s.MaxElapsed != 0 {
		t.Errorf("defaults: got MaxAttempts=%d BaseDelay=%v MaxDelay=%v Multiplier=%v RateLimitFactor=%v Jitter=%v MaxElapsed=%v; "+
			"want 3 100ms 10s 2 4 full 0", s.MaxAttempts, s.BaseDelay, s.MaxDelay, s.Multiplier, s.RateLimitFactor, s.Jitter, s.MaxElapsed)
	}
	if s.retryable == nil || s.rand == nil {
		t.Error("default Retryable or Rand not set")
	}
}

func TestResolveShortMaxDelayCapsTheDefaultBaseDelay(t *testing.T) {
	s := mustResolve(t, Policy{MaxDelay: 50 * time.Millisecond})
	if s.BaseDelay != 50*time.Millisecond || s.MaxDelay != 50*time.Millisecond {
		t.Errorf("BaseDelay=%v MaxDelay=%v, want 50ms 50ms", s.BaseDelay, s.MaxDelay)
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{JitterFull.String(), "full"},
		{JitterNone.String(), "none"},
		{JitterEqual.String(), "equal"},
		{JitterDecorrelated.String(), "decorrelated"},
		{Jitter(9).String(), "Jitter(9)"},
		{KindOther.String(), "other"},
		{KindConnection.String(), "connection"},
		{KindTimeout.String(), "timeout"},
		{KindRateLimit.String(), "rate_limit"},
		{Kind(9).String(), "Kind(9)"},
		{ReasonAttempts.String(), "max attempts"},
		{ReasonElapsed.String(), "max elapsed"},
		{ReasonGate.String(), "gate refused"},
		{ReasonBudget.String(), "budget"},
		{Reason(0).String(), "Reason(0)"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("String() = %q, want %q", tt.got, tt.want)
		}
	}
}
