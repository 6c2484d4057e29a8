package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/store"
)

// call is one call through a breaker. It returns an error only when the
// breaker answered otherwise than the case expects.
type call func(ctx context.Context) error

// benchCase is one breaker in one state.
type benchCase struct {
	name string
	// cmds is how many Redis commands the measured instance sends per call.
	cmds float64
	// setup builds the breaker in its state and returns the call to measure.
	setup func(e *env) call
	// callers: measured with 8 and 64 concurrent callers too (the cases
	// that reach Redis on every call, and the closed breakwater).
	callers bool
}

// cases are the breakers measured side by side: a bare Redis round trip,
// the floor of any call that asks Redis, then the anchors, then breakwater.
var cases = []benchCase{
	{name: "redis-ping", cmds: 1, setup: redisPing},
	{name: "tiny-script", cmds: 1, setup: tinyScript, callers: true},
	{name: "gobreaker-local/closed", cmds: 0, setup: gobreakerLocalClosed},
	{name: "gobreaker-local/open", cmds: 0, setup: gobreakerLocalOpen},
	{name: "gobreaker-redis/closed", cmds: 4, setup: gobreakerRedisClosed, callers: true},
	{name: "gobreaker-redis/open", cmds: 4, setup: gobreakerRedisOpen},
	{name: "breakwater/closed", cmds: 0, setup: breakwaterClosed, callers: true},
	{name: "breakwater/closed-sync", cmds: 1, setup: breakwaterClosedSync, callers: true},
	{name: "breakwater/open", cmds: 0, setup: breakwaterOpen},
	{name: "breakwater/half-open-reject", cmds: 0, setup: breakwaterHalfOpenReject},
	{name: "breakwater/half-open-reject-ask", cmds: 1, setup: breakwaterHalfOpenRejectAsk},
}

var errBoom = errors.New("bench: dependency failed")

func succeed() (struct{}, error) { return struct{}{}, nil }
func fail() (struct{}, error)    { return struct{}{}, errBoom }

func succeedCtx(context.Context) (struct{}, error) { return succeed() }
func failCtx(context.Context) (struct{}, error)    { return fail() }

// wantNil and wantErr check a call's result.
func wantNil(err error) error {
	if err != nil {
		return fmt.Errorf("got error %v, want success", err)
	}
	return nil
}

func wantErr(err, target error) error {
	if !errors.Is(err, target) {
		return fmt.Errorf("got error %v, want one matching %v", err, target)
	}
	return nil
}

// gobreakerTripsAtOnce trips after one failure and stays open an hour.
func gobreakerTripsAtOnce(name string) gobreaker.Settings {
	return gobreaker.Settings{
		Name:        name,
		Timeout:     time.Hour,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 1 },
	}
}

// tinySource is the smallest script that does what a breaker's script must:
// read Redis's clock and change a counter. It is the floor of any call that
// runs a script.
const tinySource = `redis.call('HINCRBY', KEYS[1], 'n', 1)
return redis.call('TIME')`

var tiny = redis.NewScript(tinySource)

func tinyScript(e *env) call {
	c := e.client(true)
	key := "{" + e.prefix + "}:tiny"
	return func(ctx context.Context) error { return tiny.Run(ctx, c, []string{key}).Err() }
}

func redisPing(e *env) call {
	c := e.client(true)
	return func(ctx context.Context) error { return c.Ping(ctx).Err() }
}

func gobreakerLocalClosed(e *env) call {
	cb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{Name: e.prefix})
	return func(context.Context) error {
		_, err := cb.Execute(succeed)
		return wantNil(err)
	}
}

func gobreakerLocalOpen(e *env) call {
	cb := gobreaker.NewCircuitBreaker[struct{}](gobreakerTripsAtOnce(e.prefix))
	if _, err := cb.Execute(fail); !errors.Is(err, errBoom) {
		e.tb.Fatalf("tripping call: got %v, want %v", err, errBoom)
	}
	if got := cb.State(); got != gobreaker.StateOpen {
		e.tb.Fatalf("after a failure: got state %v, want %v", got, gobreaker.StateOpen)
	}
	return func(context.Context) error {
		_, err := cb.Execute(succeed)
		return wantErr(err, gobreaker.ErrOpenState)
	}
}

func newDistributed(e *env, s gobreaker.Settings) *gobreaker.DistributedCircuitBreaker[struct{}] {
	dcb, err := gobreaker.NewDistributedCircuitBreaker[struct{}](newRedsyncStore(e.client(true)), s)
	if err != nil {
		e.tb.Fatalf("gobreaker.NewDistributedCircuitBreaker: %v", err)
	}
	return dcb
}

func gobreakerRedisClosed(e *env) call {
	dcb := newDistributed(e, gobreaker.Settings{Name: e.prefix})
	return func(context.Context) error {
		_, err := dcb.Execute(succeed)
		return wantNil(err)
	}
}

func gobreakerRedisOpen(e *env) call {
	dcb := newDistributed(e, gobreakerTripsAtOnce(e.prefix))
	if _, err := dcb.Execute(fail); !errors.Is(err, errBoom) {
		e.tb.Fatalf("tripping call: got %v, want %v", err, errBoom)
	}
	if got, err := dcb.State(); err != nil || got != gobreaker.StateOpen {
		e.tb.Fatalf("after a failure: got state %v (error %v), want %v", got, err, gobreaker.StateOpen)
	}
	return func(context.Context) error {
		_, err := dcb.Execute(succeed)
		return wantErr(err, gobreaker.ErrOpenState)
	}
}

// storeTimeout bounds the store's Redis calls. It is longer than the
// default (250ms) so that a stall of a busy machine is not taken for an
// outage, which would switch the breaker to its local fallback and change
// what is measured; a call that Redis answers is as fast either way.
const storeTimeout = 5 * time.Second

// instance is one service instance: its own client, store and breaker,
// all closed when the test ends. Only a measured instance's commands count.
func (e *env) instance(measured bool, s breaker.Settings) *breaker.Breaker {
	st, err := store.New(e.client(measured), store.Options{Prefix: e.prefix, Timeout: storeTimeout})
	if err != nil {
		e.tb.Fatalf("store.New: %v", err)
	}
	e.tb.Cleanup(func() { _ = st.Close() })
	b, err := breaker.New("dependency", st, s)
	if err != nil {
		e.tb.Fatalf("breaker.New: %v", err)
	}
	e.tb.Cleanup(func() { _ = b.Close() })
	return b
}

func breakwaterClosed(e *env) call {
	b := e.instance(true, breaker.Settings{})
	return func(ctx context.Context) error {
		_, err := breaker.Execute(ctx, b, succeedCtx)
		return wantNil(err)
	}
}

// breakwaterClosedSync reports every outcome as the call ends
// (ReportSync): per call, one pipelined round trip of TIME and the script.
func breakwaterClosedSync(e *env) call {
	b := e.instance(true, breaker.Settings{Reporting: breaker.ReportSync})
	return func(ctx context.Context) error {
		_, err := breaker.Execute(ctx, b, succeedCtx)
		return wantNil(err)
	}
}

func breakwaterOpen(e *env) call {
	b := e.instance(true, breaker.Settings{ConsecutiveFailures: 1, OpenDuration: time.Hour})
	ctx := context.Background()
	if _, err := breaker.Execute(ctx, b, failCtx); !errors.Is(err, errBoom) {
		e.tb.Fatalf("tripping call: got %v, want %v", err, errBoom)
	}
	if got := b.State(); got != breaker.Open {
		e.tb.Fatalf("after a failure: got state %v, want %v", got, breaker.Open)
	}
	return func(ctx context.Context) error {
		_, err := breaker.Execute(ctx, b, succeedCtx)
		return wantErr(err, breaker.ErrOpen)
	}
}

// halfOpenSettings trip at the first failure, turn half-open 1 ms later and
// keep a probe's lease for an hour.
var halfOpenSettings = breaker.Settings{ConsecutiveFailures: 1, OpenDuration: time.Millisecond, ProbeLease: time.Hour}

// holdProbe trips the breaker through another instance and lets that
// instance take the fleet's one probe lease, which it keeps.
func holdProbe(e *env) {
	prober := e.instance(false, halfOpenSettings)
	ctx := context.Background()
	if _, err := breaker.Execute(ctx, prober, failCtx); !errors.Is(err, errBoom) {
		e.tb.Fatalf("tripping call: got %v, want %v", err, errBoom)
	}
	// The open time is measured on Redis's clock, which cannot be moved:
	// wait for it, as long as the rejections say.
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, err := prober.Allow(ctx)
		var open *breaker.OpenError
		switch {
		case err == nil && p.Probe():
			return // the lease is held until it expires, an hour from now
		case err == nil:
			e.tb.Fatalf("prober: got a permit that is no probe, want a probe of a half-open breaker")
		case !errors.As(err, &open):
			e.tb.Fatalf("prober: got %v, want a probe or an open breaker", err)
		case time.Now().After(deadline):
			e.tb.Fatalf("prober: still rejected after 5s: %v", err)
		}
		time.Sleep(max(open.NextProbeIn, time.Millisecond))
	}
}

// wantHalfOpenReject checks that b rejects a call because the probe is out.
func wantHalfOpenReject(e *env, b *breaker.Breaker) {
	_, err := b.Allow(context.Background())
	var open *breaker.OpenError
	if !errors.As(err, &open) || open.State != breaker.HalfOpen {
		e.tb.Fatalf("second instance: got %v, want a rejection by a half-open breaker", err)
	}
}

func breakwaterHalfOpenReject(e *env) call {
	holdProbe(e)
	b := e.instance(true, halfOpenSettings)
	wantHalfOpenReject(e, b)
	return func(ctx context.Context) error {
		_, err := breaker.Execute(ctx, b, succeedCtx)
		return wantErr(err, breaker.ErrOpen)
	}
}

// leapingClock moves an hour and a second on at every reading, so that no
// local deadline taken from a Redis reply (at most the probe lease, an
// hour) is still ahead at the next call: every call asks Redis.
type leapingClock struct {
	start time.Time
	n     atomic.Int64
}

func (c *leapingClock) Now() time.Time {
	return c.start.Add(time.Duration(c.n.Add(1)) * (time.Hour + time.Second))
}

// After is the system clock's: a breaker never waits on its clock.
func (c *leapingClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

func breakwaterHalfOpenRejectAsk(e *env) call {
	holdProbe(e)
	s := halfOpenSettings
	s.Clock = &leapingClock{start: time.Now()}
	b := e.instance(true, s)
	wantHalfOpenReject(e, b)
	return func(ctx context.Context) error {
		_, err := breaker.Execute(ctx, b, succeedCtx)
		return wantErr(err, breaker.ErrOpen)
	}
}
