package breaker_test

// Close against real Redis: calls in flight when their breaker is closed,
// while another breaker keeps the Store's hub running, and concurrent
// Close and Flush calls.

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

// realStore returns a store on srv with a prefix of the test's own and a
// generous timeout: these tests are not about timeouts.
func realStore(t *testing.T, srv *redistest.Server) *store.Store {
	t.Helper()
	st, err := store.New(srv.Client(t), store.Options{Prefix: fleetPrefix(t), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func mustNew(t *testing.T, name string, st breaker.Store, s breaker.Settings) *breaker.Breaker {
	t.Helper()
	b, err := breaker.New(name, st, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// returns fails the test unless ch is closed within fleetWait.
func returns(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(fleetWait):
		t.Fatalf("%s did not return within %v", what, fleetWait)
	}
}

// goDone ends p with err on another goroutine; the channel is closed when
// Done returns.
func goDone(p breaker.Permit, err error) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		p.Done(context.Background(), err)
	}()
	return ch
}

// TestDoneAfterCloseReturns: a call admitted before Close ends after it,
// while another breaker of the same Store keeps its hub running: Done
// returns (a failure, a probe's result and, with ReportSync, a success wait
// for the store's answer; nothing reports for a closed breaker).
func TestDoneAfterCloseReturns(t *testing.T) {
	srv := redistest.Start(t)
	st := realStore(t, srv)
	mustNew(t, "other", st, breaker.Settings{})
	for _, mode := range []breaker.Reporting{breaker.ReportBatched, breaker.ReportSync} {
		for _, err := range []error{errBoom, nil} {
			b := mustNew(t, "payments-"+mode.String(), st, breaker.Settings{Reporting: mode})
			p, aerr := b.Allow(context.Background())
			if aerr != nil {
				t.Fatal(aerr)
			}
			if cerr := b.Close(); cerr != nil {
				t.Fatal(cerr)
			}
			returns(t, goDone(p, err), mode.String()+" Done("+errString(err)+") after Close")
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// TestProbeDoneAfterCloseReturns: the same for a half-open probe.
func TestProbeDoneAfterCloseReturns(t *testing.T) {
	srv := redistest.Start(t)
	st := realStore(t, srv)
	mustNew(t, "other", st, breaker.Settings{})
	b := mustNew(t, "probed", st, breaker.Settings{ConsecutiveFailures: 1, Reporting: breaker.ReportSync})
	ctx := context.Background()
	if err := b.ForceOpenFor(ctx, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var p breaker.Permit
	fleetPoll(t, "a probe", func() bool {
		var err error
		p, err = b.Allow(ctx)
		return err == nil && p.Probe()
	})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	returns(t, goDone(p, nil), "a probe's Done after Close")
}

// TestExecuteAcrossCloseReturns: Close while fn runs; Execute returns fn's
// result once fn ends.
func TestExecuteAcrossCloseReturns(t *testing.T) {
	srv := redistest.Start(t)
	st := realStore(t, srv)
	mustNew(t, "other", st, breaker.Settings{})
	b := mustNew(t, "payments", st, breaker.Settings{})
	started, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var got error
	go func() {
		defer close(done)
		_, got = breaker.Execute(context.Background(), b, func(context.Context) (int, error) {
			close(started)
			<-release
			return 0, errBoom
		})
	}()
	<-started
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	close(release)
	returns(t, done, "Execute across Close")
	if !errors.Is(got, errBoom) {
		t.Errorf("Execute: got %v, want fn's error", got)
	}
}

// TestGroupDoneAfterCloseReturns: a breaker the group pushed out (not held)
// and a held breaker of a closed group: their calls in flight end.
func TestGroupDoneAfterCloseReturns(t *testing.T) {
	srv := redistest.Start(t)
	st := realStore(t, srv)
	g, err := breaker.NewGroup(st, breaker.GroupOptions{MaxBreakers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ctx := context.Background()
	a, err := g.Breaker("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Breaker("c"); err != nil {
		t.Fatal(err)
	}
	p, err := a.Allow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Breaker("b"); err != nil { // pushes "a" out
		t.Fatal(err)
	}
	if _, err := a.Allow(ctx); !errors.Is(err, breaker.ErrClosed) {
		t.Fatalf("a pushed out: Allow: got %v, want ErrClosed", err)
	}
	returns(t, goDone(p, errBoom), "Done on a breaker the group pushed out")

	held, release, err := g.Hold("h")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	p, err = held.Allow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	returns(t, goDone(p, errBoom), "Done on a held breaker of a closed group")
}

// TestConcurrentCloseAndFlush: Close twice at once, and Flush (with no
// deadline) during Close, while calls report failures one by one: every
// call returns, the second Close once the first has released the breaker,
// not after Close's flush timeout.
func TestConcurrentCloseAndFlush(t *testing.T) {
	srv := redistest.Start(t)
	st := realStore(t, srv)
	mustNew(t, "other", st, breaker.Settings{}) // keeps the hub running
	for trial := 0; trial < 20 && !t.Failed(); trial++ {
		b, err := breaker.New("cc", st, breaker.Settings{ConsecutiveFailures: 1 << 20, Reporting: breaker.ReportSync})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		busy := make(chan struct{}, 4)
		for w := 0; w < 4; w++ { // traffic: something is always pending
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ; n++ {
					if err := call(b, errBoom); errors.Is(err, breaker.ErrClosed) {
						return
					}
					if n == 10 {
						busy <- struct{}{}
					}
				}
			}()
		}
		for w := 0; w < 4; w++ {
			<-busy
		}
		flushed := make(chan struct{})
		go func() {
			defer close(flushed)
			if err := b.Flush(context.Background()); err != nil && !errors.Is(err, breaker.ErrClosed) {
				t.Errorf("Flush during Close: %v", err)
			}
		}()
		closed := make(chan time.Duration, 2)
		for i := 0; i < 2; i++ {
			go func() {
				start := time.Now()
				_ = b.Close()
				closed <- time.Since(start)
			}()
		}
		for i := 0; i < 2; i++ {
			select {
			case d := <-closed:
				// Redis is healthy: a Close that waits out the flush
				// timeout (5 s) waited for nothing.
				if d >= 4*time.Second {
					t.Errorf("trial %d: a concurrent Close took %v", trial, d)
				}
			case <-time.After(fleetWait):
				t.Fatalf("trial %d: a concurrent Close did not return", trial)
			}
		}
		returns(t, flushed, "Flush during Close")
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		returns(t, done, "calls across Close")
	}
}
