package breaker_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
)

func TestNewRejectsInvalidSettings(t *testing.T) {
	st := newMini(t).store()
	tests := []struct {
		name  string
		bname string
		s     breaker.Settings
		field string
	}{
		{"empty name", "", breaker.Settings{}, "name"},
		{"brace in name", "a{b}", breaker.Settings{}, "name"},
		{"control char in name", "a\nb", breaker.Settings{}, "name"},
		{"negative consecutive", "x", breaker.Settings{ConsecutiveFailures: -2}, "ConsecutiveFailures"},
		{"no policy at all", "x", breaker.Settings{ConsecutiveFailures: breaker.Off}, "ConsecutiveFailures"},
		{"failure rate above 1", "x", breaker.Settings{FailureRate: 1.5}, "FailureRate"},
		{"negative failure rate", "x", breaker.Settings{FailureRate: -0.1}, "FailureRate"},
		{"slow rate above 1", "x", breaker.Settings{SlowCallRate: 2, SlowCallDuration: time.Second}, "SlowCallRate"},
		{"slow rate without duration", "x", breaker.Settings{SlowCallRate: 0.5}, "SlowCallDuration"},
		{"negative slow duration", "x", breaker.Settings{SlowCallDuration: -time.Second}, "SlowCallDuration"},
		{"negative minimum calls", "x", breaker.Settings{MinimumCalls: -1}, "MinimumCalls"},
		{"negative window", "x", breaker.Settings{Window: -time.Second}, "Window"},
		{"window thinner than its buckets", "x", breaker.Settings{Window: 5 * time.Millisecond, WindowBuckets: 10}, "Window"},
		{"too many buckets", "x", breaker.Settings{WindowBuckets: 5000}, "WindowBuckets"},
		{"negative quorum", "x", breaker.Settings{Quorum: -1}, "Quorum"},
		{"negative open duration", "x", breaker.Settings{OpenDuration: -time.Second}, "OpenDuration"},
		{"sub-millisecond open duration", "x", breaker.Settings{OpenDuration: time.Microsecond}, "OpenDuration"},
		{"max open below open", "x", breaker.Settings{OpenDuration: time.Minute, MaxOpenDuration: time.Second}, "MaxOpenDuration"},
		{"jitter of 1", "x", breaker.Settings{OpenJitter: 1}, "OpenJitter"},
		{"negative probes", "x", breaker.Settings{MaxProbes: -1}, "MaxProbes"},
		{"negative probe successes", "x", breaker.Settings{ProbeSuccesses: -3}, "ProbeSuccesses"},
		{"negative lease", "x", breaker.Settings{ProbeLease: -time.Second}, "ProbeLease"},
		{"negative flush interval", "x", breaker.Settings{FlushInterval: -time.Millisecond}, "FlushInterval"},
		{"flush interval past its bound", "x", breaker.Settings{FlushInterval: breaker.MaxFlushInterval + 1}, "FlushInterval"},
		{"flush interval of MaxInt64", "x", breaker.Settings{FlushInterval: math.MaxInt64}, "FlushInterval"},
		{"unknown fallback", "x", breaker.Settings{Fallback: 7}, "Fallback"},
		{"space in instance", "x", breaker.Settings{Instance: "pod 1"}, "Instance"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := breaker.New(tt.bname, st, tt.s)
			if err == nil {
				b.Close()
				t.Fatalf("New(%q, %+v) = nil error, want one naming %s", tt.bname, tt.s, tt.field)
			}
			if !errors.Is(err, breaker.ErrInvalidSettings) {
				t.Errorf("got %v, want it to match ErrInvalidSettings", err)
			}
			var se *breaker.SettingsError
			if !errors.As(err, &se) || se.Field != tt.field {
				t.Errorf("got %v, want a SettingsError for field %s", err, tt.field)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("message %q does not name %s", err, tt.field)
			}
		})
	}
	if _, err := breaker.New("x", nil, breaker.Settings{}); !errors.Is(err, breaker.ErrInvalidSettings) {
		t.Errorf("New with a nil store: got %v, want ErrInvalidSettings", err)
	}
}

func TestZeroSettingsAreUsable(t *testing.T) {
	e := newMini(t)
	b := e.instance("zero", breaker.Settings{})
	for i := 0; i < breaker.DefaultConsecutiveFailures-1; i++ {
		if err := call(b, errBoom); !errors.Is(err, errBoom) {
			t.Fatalf("call %d: got %v, want the call's own error", i, err)
		}
	}
	if got := b.State(); got != breaker.Closed {
		t.Fatalf("after %d failures: got %v, want closed", breaker.DefaultConsecutiveFailures-1, got)
	}
	call(b, errBoom)
	snap := snapshot(t, b)
	if snap.State != breaker.Open || snap.NextProbeIn != breaker.DefaultOpenDuration {
		t.Fatalf("after %d failures: got %v with next probe in %v, want open for %v",
			breaker.DefaultConsecutiveFailures, snap.State, snap.NextProbeIn, breaker.DefaultOpenDuration)
	}
}
