package breaker_test

import (
	"context"
	"errors"
	"runtime"
	"testing"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/redistest"
)

// TestExecuteGoexit: runtime.Goexit in fn (t.FailNow in a test) goes on as
// Goexit, not as a panic, and the call counts as a failure.
func TestExecuteGoexit(t *testing.T) {
	srv := redistest.Start(t)
	b := mustNew(t, "goexit", realStore(t, srv), breaker.Settings{Reporting: breaker.ReportSync})
	recovered := make(chan any, 1)
	returned := false
	go func() {
		defer func() { recovered <- recover() }()
		_, _ = breaker.Execute(context.Background(), b, func(context.Context) (int, error) {
			runtime.Goexit()
			return 0, nil
		})
		returned = true
	}()
	if r := <-recovered; r != nil {
		t.Fatalf("Goexit in fn became a panic: %T %v", r, r)
	}
	if returned {
		t.Fatal("Execute returned after Goexit in fn")
	}
	if got := snapshot(t, b).Counts.TotalFailures; got != 1 {
		t.Errorf("TotalFailures = %d, want 1 (the call that exited)", got)
	}
}

// TestExecutePanicNil: panic(nil) in fn is a panic (a *runtime.PanicNilError)
// and goes on as one.
func TestExecutePanicNil(t *testing.T) {
	srv := redistest.Start(t)
	b := mustNew(t, "panicnil", realStore(t, srv), breaker.Settings{Reporting: breaker.ReportSync})
	func() {
		defer func() {
			if _, ok := recover().(*runtime.PanicNilError); !ok {
				t.Error("panic(nil) in fn: want a *runtime.PanicNilError to go on")
			}
		}()
		_, _ = breaker.Execute(context.Background(), b, func(context.Context) (int, error) {
			panic(nil)
		})
	}()
	if got := snapshot(t, b).Counts.TotalFailures; got != 1 {
		t.Errorf("TotalFailures = %d, want 1", got)
	}
}

// TestDoneContextGetsNoCall: a ctx already done gets its error and no call,
// whether the view is still unknown (the first call) or known closed, as
// Check does.
func TestDoneContextGetsNoCall(t *testing.T) {
	srv := redistest.Start(t)
	b := mustNew(t, "cancelled", realStore(t, srv), breaker.Settings{Reporting: breaker.ReportSync})
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	try := func(when string) {
		t.Helper()
		ran := false
		_, err := breaker.Execute(cancelled, b, func(context.Context) (int, error) { ran = true; return 0, nil })
		if !errors.Is(err, context.Canceled) || ran {
			t.Errorf("%s: Execute with a cancelled ctx: err %v, fn ran %v; want context.Canceled and no call", when, err, ran)
		}
		if _, err := b.Allow(cancelled); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: Allow with a cancelled ctx: %v, want context.Canceled", when, err)
		}
		if err := b.Check(cancelled); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: Check with a cancelled ctx: %v, want context.Canceled", when, err)
		}
	}
	try("state unknown")
	if err := call(b, nil); err != nil {
		t.Fatal(err)
	}
	if s := b.State(); s != breaker.Closed {
		t.Fatalf("state %v, want closed", s)
	}
	try("known closed")
	if got := snapshot(t, b).Counts.TotalSuccesses; got != 1 {
		t.Errorf("TotalSuccesses = %d, want 1: calls refused for their ctx count nothing", got)
	}
}
