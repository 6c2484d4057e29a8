package breaker_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

// Two live breakers of one name on one Store, both given the pod's name as
// their Instance (as a user sets it for every breaker), report under ids of
// their own, so that the store takes neither's batches for the other's
// duplicates: every outcome of both is counted once.
func TestSameNameAndInstanceCountEveryOutcome(t *testing.T) {
	srv := redistest.Start(t)
	st := realStore(t, srv)
	s := breaker.Settings{Instance: "pod-1"}
	b1 := mustNew(t, "dup", st, s)
	b2 := mustNew(t, "dup", st, s)
	if b1.Instance() != "pod-1" || b2.Instance() != "pod-1#2" {
		t.Fatalf("ids %q and %q, want pod-1 and pod-1#2", b1.Instance(), b2.Instance())
	}
	if other := mustNew(t, "other", st, s); other.Instance() != "pod-1" {
		t.Errorf("a breaker of another name reports as %q, want pod-1", other.Instance())
	}
	ctx := context.Background()
	const n = 500
	var wg sync.WaitGroup
	for _, b := range []*breaker.Breaker{b1, b2} {
		wg.Add(1)
		go func(b *breaker.Breaker) {
			defer wg.Done()
			for i := 0; i < n; i++ {
				if _, err := breaker.Execute(ctx, b, func(context.Context) (int, error) { return 0, nil }); err != nil {
					t.Error(err)
					return
				}
			}
		}(b)
	}
	wg.Wait()
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b2.Close(); err != nil {
		t.Fatal(err)
	}
	b3 := mustNew(t, "dup", st, s)
	if b3.Instance() != "pod-1" {
		t.Errorf("after both closed, a new breaker reports as %q, want pod-1 again", b3.Instance())
	}
	snap, err := b3.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Counts.TotalSuccesses; got != 2*n {
		t.Errorf("TotalSuccesses = %d, want %d: every outcome of both breakers once", got, 2*n)
	}
}

// TestAnObservedBreakersIDIsFreedOnClose: a breaker with an Observer (whose
// store calls are wrapped to be observed) frees its id on Close like any
// other: the next breaker of its name and Instance reports under it.
func TestAnObservedBreakersIDIsFreedOnClose(t *testing.T) {
	srv := redistest.Start(t)
	st := realStore(t, srv)
	s := breaker.Settings{Instance: "pod-1", Observer: breaker.NopObserver{}}
	for i := 0; i < 3; i++ {
		b := mustNew(t, "observed", st, s)
		if b.Instance() != "pod-1" {
			t.Fatalf("breaker %d after %d closed: reports as %q, want pod-1", i+1, i, b.Instance())
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// The state hash forgets instances that reported nothing for the keys' idle
// expiry (an hour at least) when a report renews that expiry, so that a
// breaker in use for months does not keep every process, and every breaker
// a Group made anew, that ever reported.
func TestIdleInstancesAreForgotten(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	ok := func(context.Context) (int, error) { return 0, nil }
	st := realStore(t, srv)
	a := mustNew(t, "prune", st, breaker.Settings{Instance: "pod-a"})
	if _, err := breaker.Execute(ctx, a, ok); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c := srv.Client(t)
	key := "{" + fleetPrefix(t) + ":prune}:v1:state"
	tm, err := c.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	recent := strconv.FormatInt(tm.Add(-time.Minute).UnixMicro(), 10)
	old := strconv.FormatInt(tm.Add(-25*time.Hour).UnixMicro(), 10) // the expiry is a day
	if err := c.HSet(ctx, key, "q.gone", old, "t.gone", old, "q.junk", "x", "q.live", recent, "t.live", recent).Err(); err != nil {
		t.Fatal(err)
	}
	// Another process's store: its first report renews the keys' expiry.
	b := mustNew(t, "prune", realStore(t, srv), breaker.Settings{Instance: "pod-b"})
	if _, err := breaker.Execute(ctx, b, ok); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]bool{"q.gone": false, "t.gone": false, "q.junk": true,
		"q.live": true, "t.live": true, "q.pod-a": true, "q.pod-b": true} {
		if got, err := c.HExists(ctx, key, f).Result(); err != nil || got != want {
			t.Errorf("field %s: present %v (%v), want %v", f, got, err, want)
		}
	}
	snap, err := b.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Counts.TotalSuccesses != 2 {
		t.Errorf("TotalSuccesses = %d, want 2", snap.Counts.TotalSuccesses)
	}
}

// A process that takes over an Instance from one whose clock ran ahead (a
// pod restarted on another host with the same name) finds a later sequence
// in the store than its own clock gives: its batches are no duplicates, and
// every one counts.
func TestASequenceAheadOfTheClockLosesNothing(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	st := realStore(t, srv)
	first := mustNew(t, "ahead", st, breaker.Settings{Instance: "pod-0"})
	if err := first.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Snapshot(ctx); err != nil { // the breaker's keys exist
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	c := srv.Client(t)
	key := "{" + fleetPrefix(t) + ":ahead}:v1:state"
	ahead := time.Now().Add(10 * time.Second).UnixMicro()
	if err := c.HSet(ctx, key, "q.pod-0", ahead).Err(); err != nil {
		t.Fatal(err)
	}
	b := mustNew(t, "ahead", realStore(t, srv), breaker.Settings{Instance: "pod-0", ConsecutiveFailures: 3})
	for i := 0; i < 100; i++ {
		if _, err := breaker.Execute(ctx, b, func(context.Context) (int, error) { return 0, nil }); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	snap, err := b.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Counts.TotalSuccesses != 100 {
		t.Fatalf("TotalSuccesses = %d, want 100: batches taken for duplicates", snap.Counts.TotalSuccesses)
	}
	for i := 0; i < 3; i++ {
		p, err := b.Allow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.Done(ctx, errors.New("boom"))
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if snap, err = b.Snapshot(ctx); err != nil || snap.State != breaker.Open {
		t.Errorf("after 3 failures: %v, %v; want the breaker open", snap.State, err)
	}
}

// A sequence far ahead of any clock (a value written by hand) is corrupt
// data: reports fail with an error that names the field, never silently.
func TestASequenceFarAheadIsCorrupt(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	st := realStore(t, srv)
	b := mustNew(t, "far", st, breaker.Settings{Instance: "pod-0"})
	if _, err := b.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	key := "{" + fleetPrefix(t) + ":far}:v1:state"
	if err := srv.Client(t).HSet(ctx, key, "q.pod-0", int64(1)<<53-1).Err(); err != nil {
		t.Fatal(err)
	}
	events := make(chan breaker.Event, 16)
	b.Listen(func(e breaker.Event) {
		if e.Kind == breaker.StoreUnavailable {
			events <- e
		}
	})
	if _, err := breaker.Execute(ctx, b, func(context.Context) (int, error) { return 0, nil }); err != nil {
		t.Fatal(err)
	}
	select { // (the batch goes at its flush interval)
	case e := <-events:
		if !errors.Is(e.Err, store.ErrCorrupt) || !strings.Contains(e.Err.Error(), "q.pod-0") {
			t.Errorf("StoreUnavailable with %v, want store.ErrCorrupt naming q.pod-0", e.Err)
		}
	case <-time.After(fleetWait):
		t.Fatal("no StoreUnavailable event: the report was dropped silently")
	}
}
