package breaker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/breakwater-go/breakwater/breaker"
)

// flakyStore answers Acquire and Read, and fails every Record.
type flakyStore struct{}

func (f *flakyStore) reply(v breaker.Verdict) breaker.Reply {
	return breaker.Reply{Verdict: v, State: breaker.Closed, Generation: 1, From: breaker.Closed}
}
func (f *flakyStore) Acquire(context.Context, breaker.Request) (breaker.Reply, error) {
	return f.reply(breaker.VerdictAllow), nil
}
func (f *flakyStore) Record(context.Context, breaker.Request) (breaker.Reply, error) {
	return breaker.Reply{}, errors.New("store: redis unavailable")
}
func (f *flakyStore) Force(context.Context, breaker.Request) (breaker.Reply, error) {
	return f.reply(breaker.VerdictOK), nil
}
func (f *flakyStore) Read(context.Context, breaker.Request) (breaker.Reply, error) {
	return f.reply(breaker.VerdictOK), nil
}
func (f *flakyStore) Watch(string, func(int64)) func() { return func() {} }

// Every outcome whose report failed must show up in some StoreRecovered
// event's Unreported, even while other calls find the store answering.
func TestUnreportedNotLost(t *testing.T) {
	b, err := breaker.New("x", &flakyStore{}, breaker.Settings{Fallback: breaker.FallbackOpen, ConsecutiveFailures: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var unreported atomic.Uint64
	b.Listen(func(e breaker.Event) {
		if e.Kind == breaker.StoreRecovered {
			unreported.Add(e.Unreported)
		}
	})
	const n = 20000
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // another caller whose store calls succeed
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = b.Snapshot(ctx)
		}
	}()
	for i := 0; i < n; i++ {
		p, err := b.Allow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.Done(ctx, nil)
	}
	close(stop)
	wg.Wait()
	_, _ = b.Snapshot(ctx) // reports what is still pending
	if got := unreported.Load(); got != n {
		t.Errorf("sum of StoreRecovered.Unreported = %d, want %d (every Record failed)", got, n)
	}
}
