package breaker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/redistest"
)

// TestIgnoredProbeFreesPlaceForItsInstance: a probe runs, a second call of
// the same instance is refused (every place taken), then the probe ends
// ignored and gives its place back: the instance's next call gets it at
// once, not after the local wait for a place to free.
func TestIgnoredProbeFreesPlaceForItsInstance(t *testing.T) {
	srv := redistest.Start(t)
	st := realStore(t, srv)
	ctx := context.Background()
	for _, mode := range []breaker.Reporting{breaker.ReportBatched, breaker.ReportSync} {
		b := mustNew(t, "probe-place-"+mode.String(), st, breaker.Settings{
			ConsecutiveFailures: 1, OpenDuration: time.Millisecond, Reporting: mode})
		if err := call(b, errBoom); !errors.Is(err, errBoom) {
			t.Fatalf("%v: call: %v", mode, err)
		}
		var p breaker.Permit
		fleetPoll(t, "a probe", func() bool {
			var err error
			p, err = b.Allow(ctx)
			if err == nil && !p.Probe() {
				p.Done(ctx, nil)
			}
			return err == nil && p.Probe()
		})
		var oe *breaker.OpenError
		if _, err := b.Allow(ctx); !errors.As(err, &oe) || oe.State != breaker.HalfOpen {
			t.Fatalf("%v: a second call while the probe runs: %v, want a half-open rejection", mode, err)
		}
		p.Done(ctx, breaker.Ignore(errBoom)) // returns once the store released the lease
		p2, err := b.Allow(ctx)
		if err != nil || !p2.Probe() {
			t.Fatalf("%v: after the ignored probe: %v, want the freed place (a probe)", mode, err)
		}
		p2.Done(ctx, nil)
	}
}
