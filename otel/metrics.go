package breakwaterotel

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/retry"
	"github.com/breakwater-go/breakwater/store"
)

// ScopeName is the instrumentation scope of the meter Metrics uses.
const ScopeName = "github.com/breakwater-go/breakwater/otel"

// Attribute keys. Values are listed in the package documentation.
const (
	AttrName      = attribute.Key("breakwater.circuitbreaker.name")
	AttrState     = attribute.Key("breakwater.circuitbreaker.state")
	AttrFromState = attribute.Key("breakwater.circuitbreaker.from_state")
	AttrToState   = attribute.Key("breakwater.circuitbreaker.to_state")
	AttrReason    = attribute.Key("breakwater.circuitbreaker.reason")
	AttrOutcome   = attribute.Key("breakwater.circuitbreaker.outcome")
	AttrSlow      = attribute.Key("breakwater.circuitbreaker.slow")
	AttrFallback  = attribute.Key("breakwater.circuitbreaker.fallback")
	AttrDecider   = attribute.Key("breakwater.circuitbreaker.decider")
	AttrOperation = attribute.Key("breakwater.store.operation")
	AttrRetryName = attribute.Key("breakwater.retry.name")
	AttrAttempt   = attribute.Key("breakwater.retry.attempt")
	AttrRetryOut  = attribute.Key("breakwater.retry.outcome")
	AttrWillRetry = attribute.Key("breakwater.retry.will_retry")
	AttrBudget    = attribute.Key("breakwater.retry.budget.name")
	AttrDecision  = attribute.Key("breakwater.retry.budget.decision")
	// AttrErrorType is OpenTelemetry's error.type.
	AttrErrorType = attribute.Key("error.type")
)

// Options configure Metrics. The zero value uses the global MeterProvider.
type Options struct {
	// MeterProvider makes the meter (default otel.GetMeterProvider()).
	MeterProvider metric.MeterProvider
}

// Metrics records Breakwater's metrics. It is a breaker.Observer: set it as
// Settings.Observer of every breaker to measure (one Metrics serves them
// all, a transport's per-host breakers included). Retry policies report
// through RetryEvents, retry budgets through ObserveBudget. Make it with
// New; it is safe for concurrent use.
type Metrics struct {
	meter metric.Meter

	calls        metric.Int64Counter
	callDuration metric.Float64Histogram
	rejections   metric.Int64Counter
	transitions  metric.Int64Counter
	probes       metric.Int64Counter
	storeCalls   metric.Float64Histogram
	batches      metric.Int64Counter
	batched      metric.Int64Counter
	attempts     metric.Int64Counter

	mu       sync.Mutex
	breakers map[*breaker.Breaker]*tracked
	budgets  map[*store.RetryBudget]string
}

// tracked is what Metrics keeps of a breaker for its observable gauges.
type tracked struct {
	name     string
	fallback string // the breaker's Settings.Fallback, as its events tell
	pending  int64
	stop     func()
}

var _ breaker.Observer = (*Metrics)(nil)

// Histogram buckets, in seconds: calls as OpenTelemetry's HTTP duration
// conventions advise; store calls, which take a fraction of a millisecond
// when Redis is near, from 100µs up to the store's default timeout and past.
var (
	callBuckets  = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
	storeBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}
)

// New returns Metrics recording through the meter of opts.MeterProvider.
func New(opts Options) (*Metrics, error) {
	mp := opts.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := &Metrics{
		meter:    mp.Meter(ScopeName),
		breakers: map[*breaker.Breaker]*tracked{},
		budgets:  map[*store.RetryBudget]string{},
	}
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	var err error
	m.calls, err = m.meter.Int64Counter("breakwater.circuitbreaker.calls",
		metric.WithUnit("{call}"), metric.WithDescription("Calls a breaker admitted, by outcome, counted when they end."))
	add(err)
	m.callDuration, err = m.meter.Float64Histogram("breakwater.circuitbreaker.call.duration",
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(callBuckets...), metric.WithDescription("Duration of the calls a breaker admitted, by outcome."))
	add(err)
	m.rejections, err = m.meter.Int64Counter("breakwater.circuitbreaker.rejections",
		metric.WithUnit("{call}"), metric.WithDescription("Calls a breaker rejected, by reason."))
	add(err)
	m.transitions, err = m.meter.Int64Counter("breakwater.circuitbreaker.transitions",
		metric.WithUnit("{transition}"), metric.WithDescription("Transitions of the shared state that this instance heard, whichever instance made them."))
	add(err)
	m.probes, err = m.meter.Int64Counter("breakwater.circuitbreaker.probes",
		metric.WithUnit("{probe}"), metric.WithDescription("Half-open probes this instance ran, by outcome."))
	add(err)
	m.storeCalls, err = m.meter.Float64Histogram("breakwater.store.call.duration",
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(storeBuckets...), metric.WithDescription("Duration of a breaker's calls to its store, by operation; error.type is set on failures."))
	add(err)
	m.batches, err = m.meter.Int64Counter("breakwater.circuitbreaker.batches",
		metric.WithUnit("{batch}"), metric.WithDescription("Batches of outcomes sent to the store; error.type is set on failures."))
	add(err)
	m.batched, err = m.meter.Int64Counter("breakwater.circuitbreaker.batch.outcomes",
		metric.WithUnit("{outcome}"), metric.WithDescription("Outcomes carried by the batches sent to the store."))
	add(err)
	m.attempts, err = m.meter.Int64Counter("breakwater.retry.attempts",
		metric.WithUnit("{attempt}"), metric.WithDescription("Attempts of retry policies, by attempt number and outcome, and gate refusals."))
	add(err)

	state, err := m.meter.Int64ObservableGauge("breakwater.circuitbreaker.state",
		metric.WithUnit("{state}"), metric.WithDescription("1 for the state that decides a breaker's calls on this instance (the shared state, or the fallback's while the store is unreachable), 0 for the others."))
	add(err)
	fallback, err := m.meter.Int64ObservableGauge("breakwater.circuitbreaker.fallback.active",
		metric.WithUnit("{breaker}"), metric.WithDescription("1 while a breaker decides locally because its store is unreachable, else 0."))
	add(err)
	pending, err := m.meter.Int64ObservableGauge("breakwater.circuitbreaker.outcomes.pending",
		metric.WithUnit("{outcome}"), metric.WithDescription("Outcomes waiting to be sent to the store."))
	add(err)
	budgetRequests, err := m.meter.Int64ObservableCounter("breakwater.retry.budget.requests",
		metric.WithUnit("{request}"), metric.WithDescription("Requests this instance counted in a retry budget."))
	add(err)
	budgetRetries, err := m.meter.Int64ObservableCounter("breakwater.retry.budget.retries",
		metric.WithUnit("{retry}"), metric.WithDescription("Retries a retry budget allowed (allowed, allowed_local) or refused, on this instance."))
	add(err)
	budgetTokens, err := m.meter.Int64ObservableGauge("breakwater.retry.budget.tokens",
		metric.WithUnit("{retry}"), metric.WithDescription("Retries this instance claimed from a retry budget and holds unused."))
	add(err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("breakwaterotel: %w", err)
	}
	_, err = m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		for b, t := range m.breakers {
			name := AttrName.String(t.name)
			cur := b.State()
			for s := breaker.Closed; s <= breaker.Disabled; s++ {
				v := int64(0)
				if s == cur {
					v = 1
				}
				o.ObserveInt64(state, v, metric.WithAttributes(name, AttrState.String(s.String())))
			}
			v := int64(0)
			if d := b.Decider(); d != breaker.DecideShared {
				v = 1
				t.fallback = fallbackOf(d)
			}
			o.ObserveInt64(fallback, v, metric.WithAttributes(name, AttrFallback.String(t.fallback)))
			o.ObserveInt64(pending, t.pending, metric.WithAttributes(name))
		}
		for b, name := range m.budgets {
			st := b.Stats()
			attr := AttrBudget.String(name)
			o.ObserveInt64(budgetRequests, int64(st.Requests), metric.WithAttributes(attr))
			o.ObserveInt64(budgetRetries, int64(st.Retries-st.LocalRetries), metric.WithAttributes(attr, AttrDecision.String("allowed")))
			o.ObserveInt64(budgetRetries, int64(st.LocalRetries), metric.WithAttributes(attr, AttrDecision.String("allowed_local")))
			o.ObserveInt64(budgetRetries, int64(st.Refused), metric.WithAttributes(attr, AttrDecision.String("refused")))
			o.ObserveInt64(budgetTokens, st.Tokens, metric.WithAttributes(attr))
		}
		return nil
	}, state, fallback, pending, budgetRequests, budgetRetries, budgetTokens)
	if err != nil {
		return nil, fmt.Errorf("breakwaterotel: %w", err)
	}
	return m, nil
}

// Attached implements breaker.Observer: the breaker's state gauge has a
// value from now on, and its transitions and fallback are followed.
func (m *Metrics) Attached(b *breaker.Breaker) {
	t := &tracked{name: b.Name(), fallback: breaker.FallbackLocal.String()}
	name := AttrName.String(t.name)
	t.stop = b.Listen(func(e breaker.Event) {
		if e.Kind == breaker.StateChanged {
			decider := "shared"
			if e.Decider == breaker.DecideLocal {
				decider = "local"
			}
			m.transitions.Add(context.Background(), 1, metric.WithAttributes(name,
				AttrFromState.String(e.From.String()), AttrToState.String(e.To.String()), AttrReason.String(e.Reason),
				AttrDecider.String(decider)))
		}
		m.mu.Lock()
		t.fallback = e.Fallback.String()
		m.mu.Unlock()
	})
	m.mu.Lock()
	m.breakers[b] = t
	m.mu.Unlock()
}

// Detached implements breaker.Observer: the breaker's gauges stop.
func (m *Metrics) Detached(b *breaker.Breaker) {
	m.mu.Lock()
	t := m.breakers[b]
	delete(m.breakers, b)
	m.mu.Unlock()
	if t != nil {
		t.stop()
	}
}

// CallEnded implements breaker.Observer.
func (m *Metrics) CallEnded(c breaker.CallInfo) {
	ctx := context.Background()
	attrs := metric.WithAttributes(AttrName.String(c.Name), AttrOutcome.String(c.Outcome.String()), AttrSlow.Bool(c.Slow))
	m.calls.Add(ctx, 1, attrs)
	m.callDuration.Record(ctx, c.Duration.Seconds(), attrs)
	if c.Probe {
		m.probes.Add(ctx, 1, metric.WithAttributes(AttrName.String(c.Name), AttrOutcome.String(c.Outcome.String())))
	}
}

// CallRejected implements breaker.Observer.
func (m *Metrics) CallRejected(r breaker.Rejection) {
	m.rejections.Add(context.Background(), 1, metric.WithAttributes(AttrName.String(r.Name), AttrReason.String(r.Reason.String())))
}

// StoreCalled implements breaker.Observer.
func (m *Metrics) StoreCalled(c breaker.StoreCall) {
	attrs := []attribute.KeyValue{AttrName.String(c.Name), AttrOperation.String(c.Op)}
	if c.Err != nil {
		attrs = append(attrs, AttrErrorType.String(storeErrorType(c.Err)))
	}
	m.storeCalls.Record(context.Background(), c.Duration.Seconds(), metric.WithAttributes(attrs...))
}

// BatchFlushed implements breaker.Observer.
func (m *Metrics) BatchFlushed(b breaker.FlushInfo) {
	ctx := context.Background()
	attrs := []attribute.KeyValue{AttrName.String(b.Name)}
	if b.Err != nil {
		attrs = append(attrs, AttrErrorType.String(storeErrorType(b.Err)))
	}
	m.batches.Add(ctx, 1, metric.WithAttributes(attrs...))
	if b.Err == nil {
		m.batched.Add(ctx, int64(b.Outcomes), metric.WithAttributes(AttrName.String(b.Name)))
	}
	m.mu.Lock()
	for _, t := range m.breakers {
		if t.name == b.Name {
			t.pending = int64(b.Pending)
		}
	}
	m.mu.Unlock()
}

// fallbackOf names the fallback that d stands for, as Fallback.String does.
func fallbackOf(d breaker.Decider) string {
	switch d {
	case breaker.DecideFailOpen:
		return breaker.FallbackOpen.String()
	case breaker.DecideFailClosed:
		return breaker.FallbackClosed.String()
	}
	return breaker.FallbackLocal.String()
}

// storeErrorType names a store error for error.type.
func storeErrorType(err error) string {
	switch {
	case errors.Is(err, store.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, store.ErrCorrupt):
		return "corrupt"
	case errors.Is(err, store.ErrProtocol):
		return "protocol"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "_OTHER"
}

// RetryEvents returns a retry.Policy OnEvent hook that counts attempts
// under name, then calls next (which may be nil). Give a name of low
// cardinality, such as the dependency's; the transport sets a policy's
// Name to each request's URL, which is not used here.
func (m *Metrics) RetryEvents(name string, next func(retry.Event)) func(retry.Event) {
	rn := AttrRetryName.String(name)
	return func(e retry.Event) {
		attrs := []attribute.KeyValue{rn, AttrAttempt.Int(e.Attempt), AttrWillRetry.Bool(e.WillRetry)}
		switch {
		case e.GateRefused:
			attrs = append(attrs, AttrRetryOut.String("gate_refused"))
		case e.Err == nil:
			attrs = append(attrs, AttrRetryOut.String("success"))
		default:
			attrs = append(attrs, AttrRetryOut.String("failure"), AttrErrorType.String(retryErrorType(e)))
		}
		m.attempts.Add(context.Background(), 1, metric.WithAttributes(attrs...))
		if next != nil {
			next(e)
		}
	}
}

// retryErrorType names a failed attempt's error: the HTTP status code, or
// the retry package's Kind (connection, timeout, rate_limit), else _OTHER.
func retryErrorType(e retry.Event) string {
	var se *retry.StatusError
	if errors.As(e.Err, &se) {
		return strconv.Itoa(se.StatusCode)
	}
	if e.Kind == retry.KindOther {
		return "_OTHER"
	}
	return e.Kind.String()
}

// ObserveBudget reports b's use (its Stats) under the budget's name until
// the returned function is called.
func (m *Metrics) ObserveBudget(b *store.RetryBudget) (stop func()) {
	m.mu.Lock()
	m.budgets[b] = b.Name()
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		delete(m.budgets, b)
		m.mu.Unlock()
	}
}
