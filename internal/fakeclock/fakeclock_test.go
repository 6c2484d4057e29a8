package fakeclock_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/internal/fakeclock"
)

var epoch = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// guard bounds a blocking wait so that a broken clock fails the test instead of
// hanging it.
func guard(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func received(ch <-chan time.Time) (time.Time, bool) {
	select {
	case v := <-ch:
		return v, true
	default:
		return time.Time{}, false
	}
}

func TestNowAndAdvance(t *testing.T) {
	c := fakeclock.New(epoch)
	if got := c.Now(); !got.Equal(epoch) {
		t.Fatalf("Now() = %v, want %v", got, epoch)
	}
	c.Advance(1500 * time.Millisecond)
	if got, want := c.Now(), epoch.Add(1500*time.Millisecond); !got.Equal(want) {
		t.Fatalf("after Advance(1.5s): Now() = %v, want %v", got, want)
	}
	c.Advance(-time.Hour)
	if got, want := c.Now(), epoch.Add(1500*time.Millisecond); !got.Equal(want) {
		t.Fatalf("after Advance(-1h): Now() = %v, want %v (time must not go back)", got, want)
	}
}

func TestZeroValueClock(t *testing.T) {
	var c fakeclock.Clock
	ch := c.After(time.Second)
	if err := c.BlockUntilContext(guard(t), 1); err != nil {
		t.Fatalf("BlockUntilContext: %v", err)
	}
	c.Advance(time.Second)
	if v, ok := received(ch); !ok || !v.Equal(time.Time{}.Add(time.Second)) {
		t.Fatalf("zero clock timer: got (%v, %v), want (%v, true)", v, ok, time.Time{}.Add(time.Second))
	}
}

func TestAfterFiresAtDeadline(t *testing.T) {
	c := fakeclock.New(epoch)
	ch := c.After(time.Second)
	c.Advance(999 * time.Millisecond)
	if v, ok := received(ch); ok {
		t.Fatalf("timer fired early at %v", v)
	}
	c.Advance(time.Millisecond)
	v, ok := received(ch)
	if !ok {
		t.Fatal("timer did not fire at its deadline")
	}
	if want := epoch.Add(time.Second); !v.Equal(want) {
		t.Fatalf("timer sent %v, want %v", v, want)
	}
	if n := c.Pending(); n != 0 {
		t.Fatalf("Pending() after firing = %d, want 0", n)
	}
}

func TestNonPositiveDurationFiresAtOnce(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		c := fakeclock.New(epoch)
		ch := c.After(d)
		if v, ok := received(ch); !ok || !v.Equal(epoch.Add(d)) {
			t.Errorf("After(%v): got (%v, %v), want (%v, true)", d, v, ok, epoch.Add(d))
		}
		if n := c.Pending(); n != 0 {
			t.Errorf("After(%v): Pending() = %d, want 0", d, n)
		}
	}
}

func TestAdvanceFiresEveryDueTimer(t *testing.T) {
	c := fakeclock.New(epoch)
	// Created out of deadline order; two share a deadline.
	specs := []struct {
		name string
		d    time.Duration
	}{
		{"c", 3 * time.Second},
		{"a", 1 * time.Second},
		{"b1", 2 * time.Second},
		{"b2", 2 * time.Second},
		{"late", 10 * time.Second},
	}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	// Each timer is read by its own goroutine, blocked before Advance runs.
	got := make(map[string]time.Time)
	for _, s := range specs {
		s := s
		ch := c.After(s.d)
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := <-ch
			mu.Lock()
			got[s.name] = v
			mu.Unlock()
		}()
	}
	c.Advance(5 * time.Second)
	// Only "late" is still pending; release it so the goroutines finish.
	if n := c.Pending(); n != 1 {
		t.Fatalf("Pending() = %d, want 1", n)
	}
	c.Advance(5 * time.Second)
	wg.Wait()
	for _, s := range specs {
		if want := epoch.Add(s.d); !got[s.name].Equal(want) {
			t.Errorf("timer %s got %v, want %v", s.name, got[s.name], want)
		}
	}
}

func TestAdvanceOrderObservedThroughNow(t *testing.T) {
	// NewTimer channels are buffered, so Advance fires them all; the order is
	// visible through the values and through Next before each step.
	c := fakeclock.New(epoch)
	t3 := c.NewTimer(3 * time.Second)
	t1 := c.NewTimer(1 * time.Second)
	t2 := c.NewTimer(2 * time.Second)
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second} {
		next, ok := c.Next()
		if !ok || !next.Equal(epoch.Add(want)) {
			t.Fatalf("step %d: Next() = (%v, %v), want (%v, true)", i, next, ok, epoch.Add(want))
		}
		c.Advance(next.Sub(c.Now()))
	}
	for i, tm := range []*fakeclock.Timer{t1, t2, t3} {
		want := epoch.Add(time.Duration(i+1) * time.Second)
		if v, ok := received(tm.C); !ok || !v.Equal(want) {
			t.Errorf("timer %d: got (%v, %v), want (%v, true)", i+1, v, ok, want)
		}
	}
	if _, ok := c.Next(); ok {
		t.Error("Next() reported a timer after all fired")
	}
}

func TestTimerStopAndReset(t *testing.T) {
	c := fakeclock.New(epoch)
	tm := c.NewTimer(time.Second)
	if !tm.Stop() {
		t.Fatal("Stop on a pending timer returned false, want true")
	}
	if tm.Stop() {
		t.Fatal("second Stop returned true, want false")
	}
	c.Advance(2 * time.Second)
	if v, ok := received(tm.C); ok {
		t.Fatalf("stopped timer fired at %v", v)
	}

	if tm.Reset(time.Second) {
		t.Fatal("Reset on a stopped timer returned true, want false")
	}
	if n := c.Pending(); n != 1 {
		t.Fatalf("Pending() after Reset = %d, want 1", n)
	}
	if !tm.Reset(3 * time.Second) {
		t.Fatal("Reset on a pending timer returned false, want true")
	}
	c.Advance(time.Second)
	if v, ok := received(tm.C); ok {
		t.Fatalf("timer fired at %v, before its reset deadline", v)
	}
	c.Advance(2 * time.Second)
	if v, ok := received(tm.C); !ok || !v.Equal(epoch.Add(5*time.Second)) {
		t.Fatalf("reset timer: got (%v, %v), want (%v, true)", v, ok, epoch.Add(5*time.Second))
	}

	// A value fired but not received is discarded by Stop and Reset.
	tm.Reset(time.Second)
	c.Advance(time.Second)
	if tm.Stop() {
		t.Fatal("Stop after firing returned true, want false")
	}
	if v, ok := received(tm.C); ok {
		t.Fatalf("read stale value %v after Stop", v)
	}

	var zero fakeclock.Timer
	if zero.Stop() || zero.Reset(time.Second) {
		t.Fatal("Stop/Reset on a zero Timer returned true, want false")
	}
}

func TestBlockUntil(t *testing.T) {
	c := fakeclock.New(epoch)
	const workers = 3
	done := make(chan time.Time, workers)
	for i := 0; i < workers; i++ {
		d := time.Duration(i+1) * time.Second
		go func() { done <- <-c.After(d) }()
	}
	if err := c.BlockUntilContext(guard(t), workers); err != nil {
		t.Fatalf("BlockUntilContext(%d): %v", workers, err)
	}
	if n := c.Pending(); n != workers {
		t.Fatalf("Pending() = %d, want %d", n, workers)
	}
	c.Advance(workers * time.Second)
	for i := 0; i < workers; i++ {
		<-done
	}
	// Already satisfied: returns at once.
	c.BlockUntil(0)
}

func TestBlockUntilContextCancelled(t *testing.T) {
	c := fakeclock.New(epoch)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.BlockUntilContext(ctx, 1) }()
	cancel()
	if err := <-errc; err != context.Canceled {
		t.Fatalf("BlockUntilContext after cancel = %v, want %v", err, context.Canceled)
	}
}

func TestConcurrentUse(t *testing.T) {
	c := fakeclock.New(epoch)
	const n = 50
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		i := i
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-c.After(time.Duration(i%5+1) * time.Millisecond)
			_ = c.Now()
		}()
	}
	if err := c.BlockUntilContext(guard(t), n); err != nil {
		t.Fatalf("BlockUntilContext: %v", err)
	}
	for i := 0; i < 5; i++ {
		c.Advance(time.Millisecond)
	}
	wg.Wait()
	if got := c.Pending(); got != 0 {
		t.Fatalf("Pending() = %d, want 0", got)
	}
}
