package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// runner runs scripts the way every Redis call of the package runs: behind a
// health breaker on Redis, bounded by a timeout whatever the client's
// options, with errors sorted into ErrUnavailable, ErrCorrupt and others.
type runner struct {
	client   redis.UniversalClient
	ctxAware bool // client bounds socket I/O by a call's context
	timeout  time.Duration
	cooldown time.Duration
	now      func() time.Time
	health   health
}

func newRunner(client redis.UniversalClient, timeout, cooldown time.Duration, now func() time.Time) runner {
	return runner{client: client, ctxAware: contextAware(client), timeout: timeout, cooldown: cooldown, now: now}
}

// run runs script, failing fast while Redis is known to be away.
func (r *runner) run(ctx context.Context, script *redis.Script, keys []string, args []interface{}) (interface{}, error) {
	var res interface{}
	err := r.call(ctx, func(ctx context.Context) error {
		var err error
		res, err = r.eval(ctx, script, keys, args)
		return err
	})
	return res, err
}

// call runs fn behind the health breaker, bounded by the timeout, and sorts
// its error.
func (r *runner) call(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := r.health.enter(r.now()); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	err := fn(cctx)
	cancel()
	switch {
	case err == nil:
		r.health.up()
		return nil
	case ctx.Err() != nil:
		r.health.abandon()
		return ctx.Err()
	case isOutage(err):
		r.health.downAt(r.now(), r.cooldown, err)
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	r.health.up()
	if isCorrupt(err) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// bounded runs fn and returns by the time ctx is done, whatever the
// client's options (see eval).
func (r *runner) bounded(ctx context.Context, fn func(ctx context.Context) error) error {
	if r.ctxAware {
		return fn(ctx)
	}
	ch := make(chan error, 1)
	go func() { ch <- fn(ctx) }()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		select {
		case err := <-ch:
			return err
		default:
			return ctx.Err()
		}
	}
}

// eval runs script and returns by the time ctx is done. go-redis bounds a
// call's socket reads and writes by its context only when the client has
// ContextTimeoutEnabled; otherwise a Redis that hangs would hold the call
// for the client's ReadTimeout (3s by default), whatever the timeout says.
// With such a client the script runs on its own goroutine, which is
// abandoned when ctx is done and ends at the client's read timeout.
func (r *runner) eval(ctx context.Context, script *redis.Script, keys []string, args []interface{}) (interface{}, error) {
	if r.ctxAware {
		return script.Run(ctx, r.client, keys, args...).Result()
	}
	type result struct {
		res interface{}
		err error
	}
	ch := make(chan result, 1)
	go func() {
		res, err := script.Run(ctx, r.client, keys, args...).Result()
		ch <- result{res, err}
	}()
	select {
	case res := <-ch:
		return res.res, res.err
	case <-ctx.Done():
		select {
		case res := <-ch:
			return res.res, res.err
		default:
			return nil, ctx.Err()
		}
	}
}

// contextAware reports whether client bounds socket I/O by a call's context.
func contextAware(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

// isOutage tells a Redis that is away or not serving from one that answered.
func isOutage(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	msg := rerr.Error()
	for _, p := range []string{"LOADING", "BUSY", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY", "MOVED", "ASK "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

func isCorrupt(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "BWCORRUPT") || strings.Contains(msg, "WRONGTYPE")
}

// health is a breaker on Redis itself: after an outage it fails fast for a
// cooldown, then lets one call through to try again.
type health struct {
	mu        sync.Mutex
	downUntil time.Time
	down      bool
	probing   bool
	last      error
}

func (h *health) enter(now time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.down {
		return nil
	}
	if now.Before(h.downUntil) || h.probing {
		return fmt.Errorf("%w (failing fast after: %v)", ErrUnavailable, h.last)
	}
	h.probing = true
	return nil
}

func (h *health) up() {
	h.mu.Lock()
	h.down, h.probing = false, false
	h.mu.Unlock()
}

func (h *health) abandon() {
	h.mu.Lock()
	h.probing = false
	h.mu.Unlock()
}

func (h *health) downAt(now time.Time, cooldown time.Duration, err error) {
	h.mu.Lock()
	h.down, h.probing, h.last = true, false, err
	h.downUntil = now.Add(cooldown)
	h.mu.Unlock()
}
