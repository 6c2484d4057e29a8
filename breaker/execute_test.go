package breaker_test

import (
	"context"
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
