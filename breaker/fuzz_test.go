package breaker_test

// Fuzz targets for what a breaker validates: settings and names. `go test`
// runs the seed corpora (testdata/fuzz/<FuzzName>/); `make fuzz` explores.

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
)

func FuzzSettingsValidate(f *testing.F) {
	f.Add(5, 0.5, 0.0, int64(0), 20, int64(time.Minute), 10, 1, int64(time.Minute), int64(0), 0.1, 1, 1, int64(30*time.Second), 0, "pod-1")
	f.Fuzz(func(t *testing.T, consecutive int, rate, slowRate float64, slowDur int64, minCalls int, window int64,
		buckets, quorum int, open, maxOpen int64, jitter float64, probes, successes int, lease int64, fallback int, instance string) {
		s := breaker.Settings{ConsecutiveFailures: consecutive, FailureRate: rate, SlowCallRate: slowRate,
			SlowCallDuration: time.Duration(slowDur), MinimumCalls: minCalls, Window: time.Duration(window),
			WindowBuckets: buckets, Quorum: quorum, OpenDuration: time.Duration(open),
			MaxOpenDuration: time.Duration(maxOpen), OpenJitter: jitter, MaxProbes: probes,
			ProbeSuccesses: successes, ProbeLease: time.Duration(lease), Fallback: breaker.Fallback(fallback),
			Instance: instance}
		err := s.Validate()
		if err != nil {
			var se *breaker.SettingsError
			if !errors.As(err, &se) || se.Field == "" || !errors.Is(err, breaker.ErrInvalidSettings) {
				t.Fatalf("Validate() = %v, want a SettingsError naming a field", err)
			}
			return
		}
		switch {
		case !(rate >= 0 && rate <= 1), !(slowRate >= 0 && slowRate <= 1), !(jitter >= 0 && jitter < 1):
			t.Fatalf("Validate accepted rate %v, slow rate %v, jitter %v", rate, slowRate, jitter)
		case consecutive < breaker.Off, minCalls < 0, window < 0, buckets < 0, quorum < 0, open < 0,
			maxOpen < 0, probes < 0, successes < 0, lease < 0, slowDur < 0:
			t.Fatalf("Validate accepted a negative field: %+v", s)
		case strings.ContainsAny(instance, " \t\r\n"):
			t.Fatalf("Validate accepted instance %q", instance)
		}
	})
}

func FuzzCheckName(f *testing.F) {
	f.Add("payments")
	f.Fuzz(func(t *testing.T, name string) {
		err := breaker.CheckName(name)
		if err != nil {
			if !errors.Is(err, breaker.ErrInvalidSettings) {
				t.Fatalf("CheckName(%q) = %v, want it to match ErrInvalidSettings", name, err)
			}
			return
		}
		if name == "" || len(name) > 512 || strings.ContainsAny(name, "{}") ||
			strings.IndexFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
			t.Fatalf("CheckName accepted %q", name)
		}
	})
}
