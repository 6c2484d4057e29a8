package store_test

// List and Inspect against a real redis-server frozen with SIGSTOP, through
// a client that never times out a read: ctx alone bounds them.

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

// TestAdminCallsHonourCtx: with Redis frozen, Inspect and List return once
// their ctx is done, with an error matching ErrUnavailable, even when the
// client's ReadTimeout is -1 (go-redis would wait for ever). The calls they
// leave waiting on the frozen connection end once Redis answers, or once
// the client is closed. Not parallel: it counts those calls' goroutines.
func TestAdminCallsHonourCtx(t *testing.T) {
	const (
		deadline = 300 * time.Millisecond
		within   = 5 * time.Second // generous: a loaded machine, -race
	)
	srv := redistest.Start(t)
	c := srv.Client(t, func(o *redis.Options) { o.ReadTimeout = -1 })
	st := newAdminStore(t, c, "hangadm")
	adminCalls(t, adminBreaker(t, st, "svc", "pod-1", adminSettings), nil)

	calls := []struct {
		name string
		fn   func(ctx context.Context) error
	}{
		{"Inspect", func(ctx context.Context) error {
			_, err := st.Inspect(ctx, store.InspectOptions{}, "svc", "other")
			return err
		}},
		{"List", func(ctx context.Context) error {
			_, err := st.List(ctx, "*")
			return err
		}},
	}
	// bounded runs fn with a ctx of deadline while Redis is frozen and
	// returns its error; it fails the test if fn is still blocked after
	// within, thawing Redis to free it.
	bounded := func(name string, fn func(ctx context.Context) error) error {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		done := make(chan error, 1)
		t0 := time.Now()
		go func() { done <- fn(ctx) }()
		select {
		case err := <-done:
			t.Logf("%s with a %v ctx, Redis frozen: returned after %v: %v", name, deadline, time.Since(t0), err)
			return err
		case <-time.After(within):
			srv.Thaw()
			<-done
			t.Fatalf("%s with a %v ctx, Redis frozen, client ReadTimeout -1: still blocked after %v, want a return once ctx is done",
				name, deadline, within)
			return nil
		}
	}
	check := func(name string, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s with Redis frozen: error %v, want one matching store.ErrUnavailable and context.DeadlineExceeded", name, err)
		}
	}

	srv.Freeze()
	t.Cleanup(srv.Thaw)
	for _, call := range calls {
		check(call.name, bounded(call.name, call.fn))
	}
	if n := leftBehind(); n != len(calls) {
		t.Errorf("%d calls left waiting on the frozen Redis, want %d (one per call)", n, len(calls))
	}
	// Redis answers the calls that waited: they end.
	srv.Thaw()
	awaitNoneLeft(t, within, "Redis answered")
	for _, call := range calls {
		if err := call.fn(context.Background()); err != nil {
			t.Errorf("%s once Redis answers again: %v", call.name, err)
		}
	}

	// Closing the client ends them too, Redis frozen still.
	srv.Freeze()
	for _, call := range calls {
		check(call.name, bounded(call.name, call.fn))
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	awaitNoneLeft(t, within, "the client was closed")
}

// leftBehind counts the goroutines of Inspect's and List's Redis calls
// that their callers gave up on.
func leftBehind() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "internal/bound.") &&
			(strings.Contains(g, "store.(*Store).inspect") || strings.Contains(g, "store.(*Store).List")) {
			count++
		}
	}
	return count
}

func awaitNoneLeft(t *testing.T, within time.Duration, after string) {
	t.Helper()
	end := time.Now().Add(within)
	for leftBehind() > 0 {
		if time.Now().After(end) {
			t.Errorf("%d calls still waiting on Redis %v after %s, want none", leftBehind(), within, after)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
