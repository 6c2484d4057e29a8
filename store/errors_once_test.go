package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/store"
)

// TestErrorsSayStoreOnce: errors wrapped on their way out of the package
// name it once ("store: retry budget "y": redis unavailable: ...",
// "breaker "x": read: store: redis unavailable: ...") and still match their
// sentinels.
func TestErrorsSayStoreOnce(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1})
	defer c.Close()
	st, err := store.New(c, store.Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b, err := st.RetryBudget("y", store.BudgetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	br, err := breaker.New("x", st, breaker.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	m.Close()
	ctx := context.Background()
	_, errRead := br.Snapshot(ctx)
	_, errUsage := b.Usage(ctx)
	for _, tt := range []struct {
		err    error
		prefix string
	}{
		{errRead, `breaker "x": snapshot: breaker "x": read: store: redis unavailable`},
		{errUsage, `store: retry budget "y": redis unavailable`},
	} {
		if tt.err == nil || !strings.HasPrefix(tt.err.Error(), tt.prefix) || strings.Count(tt.err.Error(), "store:") != 1 {
			t.Errorf("got %q, want it to start %q and say store: once", tt.err, tt.prefix)
		}
		if !errors.Is(tt.err, store.ErrUnavailable) {
			t.Errorf("%q does not match ErrUnavailable", tt.err)
		}
	}
}
