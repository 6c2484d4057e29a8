package store_test

// Helpers of the fault tests (rollback_test.go, corrupt_test.go): instances
// of one breaker, each with its own Redis client and store as separate
// processes would have, whose events are kept for the test to wait on.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/store"
)

// faultWait bounds every wait for something that should happen within a
// second or two; it is generous so that tests hold with -race on a machine
// whose cores are all busy.
const faultWait = 20 * time.Second

var errFault = errors.New("dependency failed")

// faultInstance is one instance of a breaker: its store and breaker, and a
// listener that keeps every event.
type faultInstance struct {
	b      *breaker.Breaker
	st     *store.Store
	events chan breaker.Event
}

// faultAttach makes an instance of the named breaker on st; the breaker is
// closed when the test ends.
func faultAttach(t *testing.T, st *store.Store, name string, s breaker.Settings) *faultInstance {
	t.Helper()
	b, err := breaker.New(name, st, s)
	if err != nil {
		t.Fatalf("breaker.New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	in := &faultInstance{b: b, st: st, events: make(chan breaker.Event, 4096)}
	b.Listen(func(e breaker.Event) {
		select {
		case in.events <- e:
		default:
			t.Errorf("instance %s: event queue full", s.Instance)
		}
	})
	return in
}

// faultStore makes a store on client, closed when the test ends.
func faultStore(t *testing.T, client redis.UniversalClient, o store.Options) *store.Store {
	t.Helper()
	st, err := store.New(client, o)
	if err != nil {
		t.Fatalf("store.New: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// await returns the first event for which match is true, discarding the
// others, or fails the test after faultWait.
func (in *faultInstance) await(t *testing.T, what string, match func(breaker.Event) bool) breaker.Event {
	t.Helper()
	timeout := time.NewTimer(faultWait)
	defer timeout.Stop()
	for {
		select {
		case e := <-in.events:
			if match(e) {
				return e
			}
		case <-timeout.C:
			t.Fatalf("instance %s: no %s event within %v (state %v)", in.b.Instance(), what, faultWait, in.b.State())
			return breaker.Event{}
		}
	}
}

// drain returns the events nobody took yet.
func (in *faultInstance) drain() []breaker.Event {
	var out []breaker.Event
	for {
		select {
		case e := <-in.events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// changedTo matches a StateChanged event to state to.
func changedTo(to breaker.State) func(breaker.Event) bool {
	return func(e breaker.Event) bool { return e.Kind == breaker.StateChanged && e.To == to }
}

// kindIs matches events of kind k.
func kindIs(k breaker.EventKind) func(breaker.Event) bool {
	return func(e breaker.Event) bool { return e.Kind == k }
}

// fail reports n failures through b, each on its own permit, and stops
// early when b rejects a call because it opened.
func fail(t *testing.T, b *breaker.Breaker, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		p, err := b.Allow(ctx)
		if errors.Is(err, breaker.ErrOpen) {
			return
		}
		if err != nil {
			t.Fatalf("%s: Allow %d of %d failures: %v", b.Instance(), i+1, n, err)
		}
		p.Done(ctx, errFault)
	}
}

// succeed reports n successes through b.
func succeed(t *testing.T, b *breaker.Breaker, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		p, err := b.Allow(ctx)
		if err != nil {
			t.Fatalf("%s: Allow %d of %d successes: %v", b.Instance(), i+1, n, err)
		}
		p.Done(ctx, nil)
	}
}

// flush delivers what b has not reported yet.
func flush(t *testing.T, b *breaker.Breaker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), faultWait)
	defer cancel()
	if err := b.Flush(ctx); err != nil {
		t.Fatalf("%s: Flush: %v", b.Instance(), err)
	}
}

// totals are the counts of a state hash that no transition clears.
type totals struct {
	gen, ok, ko, stale int64
	exists             bool
}

func (x totals) String() string {
	return fmt.Sprintf("gen %d, %d successes, %d failures, %d stale", x.gen, x.ok, x.ko, x.stale)
}

// readTotals reads the generation and totals of a state hash with a plain
// HMGET, bypassing the store.
func readTotals(t *testing.T, c redis.Cmdable, key string) totals {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), faultWait)
	defer cancel()
	v, err := c.HMGet(ctx, key, "gen", "tok", "tko", "tstale").Result()
	if err != nil {
		t.Fatalf("HMGET %s: %v", key, err)
	}
	var out [4]int64
	for i, x := range v {
		if x == nil {
			continue
		}
		out[i] = parseInt(t, key, x)
	}
	return totals{gen: out[0], ok: out[1], ko: out[2], stale: out[3], exists: v[0] != nil}
}

func parseInt(t *testing.T, key string, x interface{}) int64 {
	t.Helper()
	s, _ := x.(string)
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil || fmt.Sprint(n) != s {
		t.Fatalf("%s: %q is not an integer", key, s)
	}
	return n
}

// mentions reports whether err's message contains every one of subs.
func mentions(err error, subs ...string) bool {
	if err == nil {
		return false
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			return false
		}
	}
	return true
}
