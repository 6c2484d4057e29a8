package breaker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
)

// TestEveryMethodAfterCloseReturnsErrClosed: once closed, a breaker decides
// and changes nothing: every method that can fail returns ErrClosed, a
// Permit taken before Close still ends harmlessly, and Close again is nil.
func TestEveryMethodAfterCloseReturnsErrClosed(t *testing.T) {
	e := newMini(t)
	b, err := breaker.New("closed", e.store(), breaker.Settings{Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := b.Allow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	check := func(method string, err error) {
		t.Helper()
		if !errors.Is(err, breaker.ErrClosed) {
			t.Errorf("%s after Close: got %v, want ErrClosed", method, err)
		}
	}
	p.Done(ctx, nil) // a permit from before Close: no panic, no error to return
	_, err = b.Allow(ctx)
	check("Allow", err)
	check("Check", b.Check(ctx))
	_, err = b.Snapshot(ctx)
	check("Snapshot", err)
	check("Flush", b.Flush(ctx))
	check("ForceOpen", b.ForceOpen(ctx))
	check("ForceOpenFor", b.ForceOpenFor(ctx, time.Minute))
	check("ForceClose", b.ForceClose(ctx))
	check("Disable", b.Disable(ctx))
	check("Reset", b.Reset(ctx))
	ran := false
	_, err = breaker.Execute(ctx, b, func(context.Context) (int, error) { ran = true; return 1, nil })
	check("Execute", err)
	fellBack := false
	_, err = breaker.ExecuteWithFallback(ctx, b, func(context.Context) (int, error) { ran = true; return 1, nil },
		func(context.Context, error) (int, error) { fellBack = true; return 2, nil })
	check("ExecuteWithFallback", err)
	if ran || fellBack {
		t.Errorf("after Close: the call ran %v, the fallback ran %v; want neither", ran, fellBack)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close again: %v", err)
	}
}
