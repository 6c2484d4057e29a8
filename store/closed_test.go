package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker/backend"
	"github.com/breakwater-go/breakwater/store"
)

// TestEveryMethodAfterCloseReturnsErrClosed: once closed, a store serves
// nothing: every call returns ErrClosed (Do sets it on every op), Watch
// watches nothing, and Close again is harmless.
func TestEveryMethodAfterCloseReturnsErrClosed(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
	t.Cleanup(func() { _ = c.Close() })
	st, err := store.New(c, store.Options{Prefix: "closed"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	req := backend.Request{Name: "b", Instance: "i", Command: backend.CommandOpen,
		Batch: backend.Batch{Successes: 1}, Known: 1, Generation: 1, Seq: 1}
	if _, err := st.Read(ctx, req); err != nil {
		t.Fatalf("Read before Close: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	check := func(method string, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: got %v, want ErrClosed", method, err)
		}
	}
	_, err = st.Acquire(ctx, req)
	check("Acquire", err)
	_, err = st.Record(ctx, req)
	check("Record", err)
	_, err = st.Force(ctx, req)
	check("Force", err)
	_, err = st.Read(ctx, req)
	check("Read", err)
	full := req
	full.Full = true
	_, err = st.Read(ctx, full)
	check("Read (Full)", err)
	ops := []backend.Op{{Kind: backend.OpRead, Request: req}, {Kind: backend.OpRecord, Request: req}}
	st.Do(ctx, ops)
	for _, op := range ops {
		check("Do", op.Err)
	}
	_, err = st.List(ctx, "")
	check("List", err)
	_, err = st.Inspect(ctx, store.InspectOptions{}, "b")
	check("Inspect", err)
	check("Follow", st.Follow(ctx, func(store.Announcement) { t.Error("Follow called fn after Close") }))
	_, err = st.RetryBudget("retries", store.BudgetOptions{})
	check("RetryBudget", err)
	called := false
	cancel := st.Watch("b", func(int64, *backend.Reply) { called = true })
	cancel()
	if called {
		t.Error("Watch after Close called notify")
	}
	if err := st.Close(); err != nil {
		t.Errorf("Close again: %v", err)
	}
}
