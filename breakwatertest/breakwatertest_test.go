package breakwatertest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/breakwatertest"
	"github.com/breakwater-go/breakwater/clock"
	"github.com/breakwater-go/breakwater/store"
)

var _ clock.Clock = (*breakwatertest.Clock)(nil)

var errDown = errors.New("down")

func TestNewStore(t *testing.T) {
	st := breakwatertest.NewStore(t)
	b, err := breaker.New("payments", st, breaker.Settings{ConsecutiveFailures: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		_, _ = breaker.Execute(ctx, b, func(context.Context) (int, error) { return 0, errDown })
	}
	if _, err := b.Allow(ctx); !errors.Is(err, breaker.ErrOpen) {
		t.Errorf("after 2 failures: got %v, want ErrOpen", err)
	}
	snap, err := b.Snapshot(ctx)
	if err != nil || snap.State != breaker.Open || snap.Counts.PreviousFailures != 2 {
		t.Errorf("snapshot: got %+v, %v; want open after 2 failures", snap, err)
	}
}

func TestNewStoreOptions(t *testing.T) {
	srv := breakwatertest.NewServer(t)
	st, err := srv.Store(store.Options{Prefix: "checkout"})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Keys("payments")[0]; got != "{checkout:payments}:v1:state" {
		t.Errorf("key: got %q, want the prefix given", got)
	}
	if _, err := srv.Store(store.Options{Prefix: "bad{prefix}"}); err == nil {
		t.Error("a bad prefix: got no error, want one")
	}
	if _, err := srv.Store(store.Options{}, store.Options{}); err == nil {
		t.Error("two Options: got no error, want one")
	}
}

// TestFleetOnOneServer: two stores on one server are two instances of a
// service: a breaker opened through one is open for the other, announced
// over the embedded Redis's pub/sub.
func TestFleetOnOneServer(t *testing.T) {
	srv := breakwatertest.NewServer(t)
	podA, podB := newBreaker(t, srv, "a"), newBreaker(t, srv, "b")
	heard := make(chan breaker.Event, 4)
	podB.Listen(func(e breaker.Event) { heard <- e })
	ctx := context.Background()
	if _, err := podB.Allow(ctx); err != nil { // podB learns the state
		t.Fatal(err)
	}
	if err := podA.ForceOpen(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-heard:
		if e.To != breaker.ForcedOpen || e.Instance != "a" {
			t.Errorf("podB heard %+v, want a's force open", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("podB heard nothing within 10s")
	}
}

func newBreaker(t *testing.T, srv *breakwatertest.Server, instance string) *breaker.Breaker {
	t.Helper()
	st, err := srv.Store()
	if err != nil {
		t.Fatal(err)
	}
	b, err := breaker.New("payments", st, breaker.Settings{Instance: instance, Clock: srv.Clock()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestClock: the clock moves the shared state's time and the local one
// together: an open breaker lets a probe through after its OpenDuration.
func TestClock(t *testing.T) {
	srv := breakwatertest.NewServer(t)
	clk := srv.Clock()
	if srv.Clock() != clk {
		t.Fatal("Clock returned two clocks")
	}
	st, err := srv.Store()
	if err != nil {
		t.Fatal(err)
	}
	b, err := breaker.New("search", st, breaker.Settings{ConsecutiveFailures: 1, OpenDuration: time.Minute, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	_, _ = breaker.Execute(ctx, b, func(context.Context) (int, error) { return 0, errDown })
	var open *breaker.OpenError
	if err := b.Check(ctx); !errors.As(err, &open) || open.NextProbeIn != time.Minute {
		t.Fatalf("after the failure: got %v, want open for 1m", err)
	}
	start := clk.Now()
	clk.Advance(time.Minute)
	if got := clk.Now().Sub(start); got != time.Minute {
		t.Errorf("Now moved by %v, want 1m", got)
	}
	if _, err := breaker.Execute(ctx, b, func(context.Context) (int, error) { return 1, nil }); err != nil {
		t.Fatalf("the probe after 1m: %v", err)
	}
	if got := b.State(); got != breaker.Closed {
		t.Errorf("after a good probe: got %v, want closed", got)
	}
}

func TestClose(t *testing.T) {
	srv, err := breakwatertest.Start()
	if err != nil {
		t.Fatal(err)
	}
	st, err := srv.Store()
	if err != nil {
		t.Fatal(err)
	}
	b, err := breaker.New("x", st, breaker.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := srv.Store(); err == nil {
		t.Error("Store after Close: got no error, want one")
	}
}
