package breaker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/fakeclock"
	"github.com/breakwater-go/breakwater/store"
)

var errBoom = errors.New("boom")

// mini is a fleet on miniredis whose Redis clock and local clock move
// together, only when the test says so.
type mini struct {
	t      *testing.T
	m      *miniredis.Miniredis
	now    time.Time
	clock  *fakeclock.Clock
	prefix string
}

func newMini(t *testing.T) *mini {
	t.Helper()
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	e := &mini{t: t, m: miniredis.RunT(t), now: start, clock: fakeclock.New(start), prefix: "t-" + t.Name()}
	e.m.SetTime(start)
	return e
}

// advance moves both clocks.
func (e *mini) advance(d time.Duration) {
	e.now = e.now.Add(d)
	e.m.SetTime(e.now)
	e.clock.Advance(d)
}

func (e *mini) store() *store.Store {
	e.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: e.m.Addr(), MaxRetries: -1})
	e.t.Cleanup(func() { c.Close() })
	st, err := store.New(c, store.Options{Prefix: e.prefix})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { st.Close() })
	return st
}

// instance is one pod: its own client, store and breaker.
func (e *mini) instance(name string, s breaker.Settings) *breaker.Breaker {
	e.t.Helper()
	if s.Clock == nil {
		s.Clock = e.clock
	}
	s = reportingFor(s)
	b, err := breaker.New(name, e.store(), s)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { b.Close() })
	track(e.t, b)
	return b
}

// reportingFor makes the tests of the state machine report each outcome
// before Done returns (their steps expect each outcome's effect at once);
// tests of batched reporting say so by setting FlushInterval.
func reportingFor(s breaker.Settings) breaker.Settings {
	if s.Reporting == breaker.ReportBatched && s.FlushInterval == 0 {
		s.Reporting = breaker.ReportSync
	}
	return s
}

// tracked holds each test's breakers, so that a snapshot can include the
// outcomes every instance of the test has not reported yet.
var tracked sync.Map // *testing.T -> *[]*breaker.Breaker

func track(t *testing.T, b *breaker.Breaker) {
	v, _ := tracked.LoadOrStore(t, &[]*breaker.Breaker{})
	list := v.(*[]*breaker.Breaker)
	*list = append(*list, b)
	t.Cleanup(func() { tracked.Delete(t) })
}

// flushAll reports what every tracked instance of t has not reported yet.
func flushAll(t *testing.T) {
	t.Helper()
	v, ok := tracked.Load(t)
	if !ok {
		return
	}
	for _, b := range *v.(*[]*breaker.Breaker) {
		if err := b.Flush(context.Background()); err != nil && !errors.Is(err, breaker.ErrClosed) {
			t.Fatal(err)
		}
	}
}

func call(b *breaker.Breaker, err error) error {
	_, got := breaker.Execute(context.Background(), b, func(context.Context) (struct{}, error) {
		return struct{}{}, err
	})
	return got
}

func snapshot(t *testing.T, b *breaker.Breaker) breaker.Snapshot {
	t.Helper()
	flushAll(t)
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, err := b.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// events returns a channel that receives b's events.
func events(b *breaker.Breaker) <-chan breaker.Event {
	ch := make(chan breaker.Event, 1024)
	b.Listen(func(e breaker.Event) { ch <- e })
	return ch
}

// next waits for the next event of the given kind.
func next(t *testing.T, ch <-chan breaker.Event, kind breaker.EventKind) breaker.Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e := <-ch:
			if e.Kind == kind {
				return e
			}
		case <-deadline:
			t.Fatalf("no %v event within 5s", kind)
			return breaker.Event{}
		}
	}
}

func none(t *testing.T, ch <-chan breaker.Event) {
	t.Helper()
	select {
	case e := <-ch:
		t.Fatalf("unexpected event %+v", e)
	default:
	}
}
