package breaker_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

// flushSeen passes on the size of every batch delivered.
type flushSeen struct {
	breaker.NopObserver
	ch chan int
}

func (f *flushSeen) BatchFlushed(i breaker.FlushInfo) {
	if i.Err == nil {
		f.ch <- i.Outcomes
	}
}

// awaitSubscribers waits until n clients listen on channel: messages
// published from then on reach them.
func awaitSubscribers(t *testing.T, raw *redis.Client, channel string, n int64) {
	t.Helper()
	fleetPoll(t, "subscribers", func() bool {
		got, err := raw.PubSubNumSub(context.Background(), channel).Result()
		return err == nil && got[channel] >= n
	})
}

// TestSettleCallBringsHeldOutcomes: when the failures of two instances make
// a run long enough to trip once it has settled, a third instance that
// holds a success reports it at once, not when its hour-long flush
// interval ends.
func TestSettleCallBringsHeldOutcomes(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	o := store.Options{Prefix: fleetPrefix(t), Timeout: 10 * time.Second}
	s := breaker.Settings{ConsecutiveFailures: 2, FlushInterval: time.Hour, OpenDuration: time.Hour}
	seen := &flushSeen{ch: make(chan int, 16)}
	sa := s
	sa.Instance, sa.Observer = "a", seen
	a := fleetStart(t, srv, "settle", sa, o)
	fleet := fleetOf(t, srv, 2, "settle", "failing", s, o)

	awaitSubscribers(t, srv.Client(t), a.st.Channel(), 3)
	// a's first call reads the state (the store learns the breaker's key).
	p, err := a.b.Allow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.Done(ctx, nil)
	for _, in := range fleet {
		p, err := in.b.Allow(ctx)
		if err != nil {
			t.Fatalf("%s: %v", in.b.Instance(), err)
		}
		p.Done(ctx, errFleetDown) // at once: a failure may trip the breaker
	}
	select {
	case n := <-seen.ch:
		if n != 1 {
			t.Fatalf("a delivered %d outcomes, want its 1 success", n)
		}
	case <-time.After(fleetWait):
		t.Fatalf("a did not deliver its success within %v of the call", fleetWait)
	}
	snap, err := fleet[0].b.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Counts.TotalSuccesses != 1 || snap.Counts.TotalFailures != 2 {
		t.Errorf("totals: %d successes, %d failures; want 1 and 2", snap.Counts.TotalSuccesses, snap.Counts.TotalFailures)
	}
}

// TestSettleCallsAreHeededOncePerQuarterInterval: a call published again
// and again (here signed with the breaker's key, as a real one replayed
// would be) makes a breaker report what it holds once per quarter of its
// flush interval, not once per call; a call for another breaker of the
// same store is heeded meanwhile.
func TestSettleCallsAreHeededOncePerQuarterInterval(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	raw := srv.Client(t)
	st, err := store.New(srv.Client(t), store.Options{Prefix: fleetPrefix(t), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	breakers := map[string]*breaker.Breaker{}
	seen := map[string]*flushSeen{}
	call := map[string]string{} // a signed call for each breaker
	hold := func(name string) {
		t.Helper()
		p, err := breakers[name].Allow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.Done(ctx, nil)
	}
	for _, name := range []string{"one", "two"} {
		seen[name] = &flushSeen{ch: make(chan int, 64)}
		b, err := breaker.New(name, st, breaker.Settings{FlushInterval: time.Hour, Observer: seen[name]})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		breakers[name] = b
		hold(name) // (its first call reads the state: the store learns its key)
		f, err := raw.HMGet(ctx, st.Keys(name)[0], "sk", "gen").Result()
		if err != nil || f[0] == nil || f[1] == nil {
			t.Fatalf("%s: fields sk and gen: %v, %v", name, f, err)
		}
		msg := fmt.Sprintf("settle %s %s", f[1], name)
		h := hmac.New(sha1.New, []byte(f[0].(string)))
		h.Write([]byte(msg))
		call[name] = msg + "\n" + hex.EncodeToString(h.Sum(nil))
	}
	publish := func(name string, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if err := raw.Publish(ctx, st.Channel(), call[name]).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	await := func(name string) {
		t.Helper()
		select {
		case n := <-seen[name].ch:
			if n != 1 {
				t.Fatalf("%s delivered %d outcomes, want the 1 it held", name, n)
			}
		case <-time.After(fleetWait):
			t.Fatalf("%s did not deliver what it held within %v of a call", name, fleetWait)
		}
	}
	awaitSubscribers(t, raw, st.Channel(), 1)
	publish("one", 1)
	await("one")
	hold("one")
	// The store's one subscription passes messages on in order: once "two"
	// heeded its call, "one" has had the 50 before it.
	publish("one", 50)
	publish("two", 1)
	await("two")
	select {
	case n := <-seen["one"].ch:
		t.Errorf("one reported %d outcomes again on a call within a quarter of its flush interval", n)
	default:
	}
}
