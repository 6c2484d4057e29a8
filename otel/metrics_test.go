package breakwaterotel_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/fakeclock"
	breakwaterotel "github.com/breakwater-go/breakwater/otel"
	"github.com/breakwater-go/breakwater/retry"
	"github.com/breakwater-go/breakwater/store"
)

// reading is one collection of a ManualReader, searchable by metric name
// and attributes.
type reading struct {
	t  *testing.T
	rm metricdata.ResourceMetrics
}

func collect(t *testing.T, r *sdkmetric.ManualReader) reading {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return reading{t: t, rm: rm}
}

func (r reading) metric(name string) (metricdata.Metrics, bool) {
	for _, sm := range r.rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m, true
			}
		}
	}
	return metricdata.Metrics{}, false
}

// attrs turns "k=v,k=v" into a matcher: every pair must be in the set.
func matches(set attribute.Set, want string) bool {
	if want == "" {
		return true
	}
	for _, kv := range strings.Split(want, ",") {
		k, v, _ := strings.Cut(kv, "=")
		got, ok := set.Value(attribute.Key(k))
		if !ok || got.String() != v {
			return false
		}
	}
	return true
}

// int sums the int64 points of a counter or gauge whose attributes match want.
func (r reading) int(name, want string) int64 {
	r.t.Helper()
	m, ok := r.metric(name)
	if !ok {
		return -1
	}
	var sum int64
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			if matches(p.Attributes, want) {
				sum += p.Value
			}
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			if matches(p.Attributes, want) {
				sum += p.Value
			}
		}
	default:
		r.t.Fatalf("%s: data %T, want int64 sum or gauge", name, m.Data)
	}
	return sum
}

// count returns the number of recordings of a histogram whose attributes match want.
func (r reading) count(name, want string) int64 {
	r.t.Helper()
	m, ok := r.metric(name)
	if !ok {
		return -1
	}
	h, ok := m.Data.(metricdata.Histogram[float64])
	if !ok {
		r.t.Fatalf("%s: data %T, want a float64 histogram", name, m.Data)
	}
	var n uint64
	for _, p := range h.DataPoints {
		if matches(p.Attributes, want) {
			n += p.Count
		}
	}
	return int64(n)
}

// check compares values, reporting every difference.
func check(t *testing.T, step string, pairs ...interface{}) {
	t.Helper()
	for i := 0; i+2 < len(pairs); i += 3 {
		if got, want := pairs[i+1], pairs[i+2]; got != want {
			t.Errorf("%s: %s: got %v, want %v", step, pairs[i], got, want)
		}
	}
}

// env is a breaker fleet on miniredis whose clocks move only when told.
type env struct {
	t     *testing.T
	m     *miniredis.Miniredis
	now   time.Time
	clock *fakeclock.Clock
	st    *store.Store
	c     *redis.Client
}

func newEnv(t *testing.T) *env {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	e := &env{t: t, m: miniredis.RunT(t), now: start, clock: fakeclock.New(start)}
	e.m.SetTime(start)
	e.c = redis.NewClient(&redis.Options{Addr: e.m.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = e.c.Close() })
	st, err := store.New(e.c, store.Options{Prefix: "otel-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	e.st = st
	return e
}

func (e *env) advance(d time.Duration) {
	e.now = e.now.Add(d)
	e.m.SetTime(e.now)
	e.clock.Advance(d)
}

func call(b *breaker.Breaker, err error) error {
	_, got := breaker.Execute(context.Background(), b, func(context.Context) (struct{}, error) { return struct{}{}, err })
	return got
}

var errBoom = errors.New("boom")

func TestBreakerMetrics(t *testing.T) {
	e := newEnv(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	m, err := breakwaterotel.New(breakwaterotel.Options{MeterProvider: mp})
	if err != nil {
		t.Fatal(err)
	}
	// Successes wait for a failure to carry them (no timed flush within
	// the test), so that the number of store calls does not depend on
	// timing.
	b, err := breaker.New("payments", e.st, breaker.Settings{ConsecutiveFailures: 3, OpenDuration: time.Second,
		Observer: m, Clock: e.clock, Instance: "pod-1", Fallback: breaker.FallbackClosed, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan breaker.Event, 64)
	b.Listen(func(ev breaker.Event) { events <- ev })
	awaitEvent := func(want func(breaker.Event) bool, what string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case ev := <-events:
				if want(ev) {
					return
				}
			case <-deadline:
				t.Fatalf("no %s within 5s", what)
			}
		}
	}
	await := func(to breaker.State) {
		t.Helper()
		awaitEvent(func(ev breaker.Event) bool { return ev.Kind == breaker.StateChanged && ev.To == to },
			"transition to "+to.String())
	}

	// Before any call or transition, the state gauge says closed.
	r := collect(t, reader)
	pay := "breakwater.circuitbreaker.name=payments"
	check(t, "before any transition",
		"state closed", r.int("breakwater.circuitbreaker.state", pay+",breakwater.circuitbreaker.state=closed"), int64(1),
		"state open", r.int("breakwater.circuitbreaker.state", pay+",breakwater.circuitbreaker.state=open"), int64(0),
		"states reported", r.int("breakwater.circuitbreaker.state", pay), int64(1),
		"fallback active", r.int("breakwater.circuitbreaker.fallback.active", pay), int64(0),
		"transitions", r.int("breakwater.circuitbreaker.transitions", ""), int64(-1))

	// 2 successes, 3 failures: the breaker trips; 2 calls are rejected.
	// Each failure of a closed breaker is reported at once, the first one
	// with the 2 successes: 3 store records.
	for _, err := range []error{nil, nil, errBoom, errBoom, errBoom} {
		_ = call(b, err)
	}
	await(breaker.Open)
	for i := 0; i < 2; i++ {
		if err := call(b, nil); !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("open: got %v, want ErrOpen", err)
		}
	}
	r = collect(t, reader)
	check(t, "after the trip",
		"successes", r.int("breakwater.circuitbreaker.calls", pay+",breakwater.circuitbreaker.outcome=success"), int64(2),
		"failures", r.int("breakwater.circuitbreaker.calls", pay+",breakwater.circuitbreaker.outcome=failure"), int64(3),
		"call durations", r.count("breakwater.circuitbreaker.call.duration", pay), int64(5),
		"rejections (open)", r.int("breakwater.circuitbreaker.rejections", pay+",breakwater.circuitbreaker.reason=open"), int64(2),
		"transitions closed->open", r.int("breakwater.circuitbreaker.transitions",
			pay+",breakwater.circuitbreaker.from_state=closed,breakwater.circuitbreaker.to_state=open,breakwater.circuitbreaker.reason=consecutive_failures"), int64(1),
		"state open", r.int("breakwater.circuitbreaker.state", pay+",breakwater.circuitbreaker.state=open"), int64(1),
		"state closed", r.int("breakwater.circuitbreaker.state", pay+",breakwater.circuitbreaker.state=closed"), int64(0),
		"store records", r.count("breakwater.store.call.duration", pay+",breakwater.store.operation=record"), int64(3),
		"probes", r.int("breakwater.circuitbreaker.probes", ""), int64(-1))

	// The open time passes: a probe succeeds and closes the breaker.
	e.advance(time.Second)
	if err := call(b, nil); err != nil {
		t.Fatalf("probe: %v", err)
	}
	await(breaker.Closed)
	// An operator forces it open: a forced-open rejection; then closes it.
	if err := b.ForceOpen(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := call(b, nil); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("forced open: got %v, want ErrOpen", err)
	}
	if err := b.ForceClose(context.Background()); err != nil {
		t.Fatal(err)
	}
	r = collect(t, reader)
	check(t, "after the probe and the force",
		"probes (success)", r.int("breakwater.circuitbreaker.probes", pay+",breakwater.circuitbreaker.outcome=success"), int64(1),
		"successes", r.int("breakwater.circuitbreaker.calls", pay+",breakwater.circuitbreaker.outcome=success"), int64(3),
		"transitions", r.int("breakwater.circuitbreaker.transitions", pay), int64(5),
		"transitions to half-open", r.int("breakwater.circuitbreaker.transitions", pay+",breakwater.circuitbreaker.to_state=half-open,breakwater.circuitbreaker.reason=open_timeout"), int64(1),
		"rejections (forced open)", r.int("breakwater.circuitbreaker.rejections", pay+",breakwater.circuitbreaker.reason=forced_open"), int64(1),
		"store forces", r.count("breakwater.store.call.duration", pay+",breakwater.store.operation=force"), int64(2),
		"state closed", r.int("breakwater.circuitbreaker.state", pay+",breakwater.circuitbreaker.state=closed"), int64(1))

	// Redis goes away: the breaker learns it from its subscription, or from
	// the report of a failure, which goes at once; it then fails closed,
	// locally. One call is rejected.
	e.m.Close()
	if err := call(b, errBoom); !errors.Is(err, breaker.ErrOpen) {
		if !errors.Is(err, errBoom) {
			t.Fatalf("without Redis, first call: got %v, want it to run and fail, or ErrOpen", err)
		}
		awaitEvent(func(ev breaker.Event) bool { return ev.Kind == breaker.StoreUnavailable }, "store-unavailable event")
		if err := call(b, nil); !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("without Redis: got %v, want the fallback to fail closed (ErrOpen)", err)
		}
	}
	// The metrics hear of the fallback from the same event, perhaps after
	// this test's listener.
	deadline := time.Now().Add(5 * time.Second)
	for r = collect(t, reader); r.int("breakwater.circuitbreaker.fallback.active", pay+",breakwater.circuitbreaker.fallback=closed") != 1 &&
		time.Now().Before(deadline); r = collect(t, reader) {
		time.Sleep(time.Millisecond)
	}
	check(t, "without Redis",
		"fallback active", r.int("breakwater.circuitbreaker.fallback.active", pay+",breakwater.circuitbreaker.fallback=closed"), int64(1),
		"rejections (local)", r.int("breakwater.circuitbreaker.rejections", pay+",breakwater.circuitbreaker.reason=local_fallback"), int64(1))
	if n := r.count("breakwater.store.call.duration", pay+",error.type=unavailable"); n < 1 {
		t.Errorf("without Redis: %d failed store calls recorded, want at least 1", n)
	}

	// Closed: its gauges stop.
	_ = b.Close()
	r = collect(t, reader)
	if n := r.int("breakwater.circuitbreaker.state", pay); n > 0 {
		t.Errorf("after Close: %d state points, want none", n)
	}
}

func TestRetryAndBudgetMetrics(t *testing.T) {
	e := newEnv(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	m, err := breakwaterotel.New(breakwaterotel.Options{MeterProvider: mp})
	if err != nil {
		t.Fatal(err)
	}
	budget, err := store.NewRetryBudget(e.c, "api", store.BudgetOptions{Prefix: "otel-test", Ratio: 2, Floor: store.NoFloor, Batch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer budget.Close()
	stop := m.ObserveBudget(budget)
	defer stop()

	var seen []string
	p := retry.Policy{MaxAttempts: 3, BaseDelay: time.Nanosecond, MaxDelay: time.Nanosecond, Budget: budget,
		OnEvent: m.RetryEvents("api", func(e retry.Event) { seen = append(seen, fmt.Sprint(e.Attempt)) })}
	n := 0
	_, err = retry.Do(context.Background(), p, func(context.Context) (int, error) {
		n++
		if n < 3 {
			return 0, &retry.StatusError{StatusCode: http.StatusServiceUnavailable}
		}
		return n, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A second operation that fails for good: its third retry is refused
	// (2 requests allow 4 retries).
	_, err = retry.Do(context.Background(), retry.Policy{MaxAttempts: 5, BaseDelay: time.Nanosecond, MaxDelay: time.Nanosecond,
		Budget: budget, OnEvent: m.RetryEvents("api", nil)}, func(context.Context) (int, error) {
		return 0, &retry.StatusError{StatusCode: http.StatusBadGateway}
	})
	if !errors.Is(err, retry.ErrBudget) {
		t.Fatalf("second operation: got %v, want ErrBudget", err)
	}

	r := collect(t, reader)
	api := "breakwater.retry.name=api"
	check(t, "retries",
		"next hook called", strings.Join(seen, ","), "1,2,3",
		"attempt 1 failed (503), retried", r.int("breakwater.retry.attempts", api+",breakwater.retry.attempt=1,breakwater.retry.outcome=failure,error.type=503,breakwater.retry.will_retry=true"), int64(1),
		"attempt 2 failed (503), retried", r.int("breakwater.retry.attempts", api+",breakwater.retry.attempt=2,breakwater.retry.outcome=failure,error.type=503"), int64(1),
		"attempt 3 succeeded", r.int("breakwater.retry.attempts", api+",breakwater.retry.attempt=3,breakwater.retry.outcome=success"), int64(1),
		"502 retried twice", r.int("breakwater.retry.attempts", api+",error.type=502,breakwater.retry.will_retry=true"), int64(2),
		"502 not retried (budget)", r.int("breakwater.retry.attempts", api+",breakwater.retry.attempt=3,error.type=502,breakwater.retry.will_retry=false"), int64(1),
		"budget requests", r.int("breakwater.retry.budget.requests", "breakwater.retry.budget.name=api"), int64(2))
	st := budget.Stats()
	check(t, "budget",
		"retries allowed", r.int("breakwater.retry.budget.retries", "breakwater.retry.budget.name=api,breakwater.retry.budget.decision=allowed"), int64(st.Retries-st.LocalRetries),
		"retries refused", r.int("breakwater.retry.budget.retries", "breakwater.retry.budget.name=api,breakwater.retry.budget.decision=refused"), int64(st.Refused),
		"allowed + refused", int64(st.Retries+st.Refused), int64(5))
	if st.Retries != 4 {
		t.Errorf("budget: %d retries allowed, want 4 (2 × 2 requests)", st.Retries)
	}
}

// TestMetricNames lists the instruments, so that a renamed one is noticed
// (the README documents them).
func TestMetricNames(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	m, err := breakwaterotel.New(breakwaterotel.Options{MeterProvider: mp})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	b, err := breaker.New("x", e.st, breaker.Settings{Observer: m})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_ = call(b, nil)
	_ = call(b, errBoom) // reported at once, with the success: a batch of 2
	m.BatchFlushed(breaker.FlushInfo{Name: "x", Outcomes: 3, Pending: 1})
	m.RetryEvents("r", nil)(retry.Event{Attempt: 1})
	r := collect(t, reader)
	var names []string
	for _, sm := range r.rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			names = append(names, mt.Name+" "+mt.Unit)
		}
	}
	sort.Strings(names)
	want := []string{
		"breakwater.circuitbreaker.batch.outcomes {outcome}",
		"breakwater.circuitbreaker.batches {batch}",
		"breakwater.circuitbreaker.call.duration s",
		"breakwater.circuitbreaker.calls {call}",
		"breakwater.circuitbreaker.fallback.active {breaker}",
		"breakwater.circuitbreaker.outcomes.pending {outcome}",
		"breakwater.circuitbreaker.state {state}",
		"breakwater.retry.attempts {attempt}",
		"breakwater.store.call.duration s",
	}
	if got := strings.Join(names, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("instruments:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	check(t, "batches", "pending", r.int("breakwater.circuitbreaker.outcomes.pending", "breakwater.circuitbreaker.name=x"), int64(1),
		"batched", r.int("breakwater.circuitbreaker.batch.outcomes", "breakwater.circuitbreaker.name=x"), int64(2+3))
}
