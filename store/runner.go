package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/internal/bound"
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
	secrets  []string // passwords no error may print
	health   health
}

func newRunner(client redis.UniversalClient, timeout, cooldown time.Duration, now func() time.Time) runner {
	return runner{client: client, ctxAware: bound.ContextAware(client), timeout: timeout, cooldown: cooldown, now: now,
		secrets: secrets(client), health: health{probe: newProber(client), timeout: timeout}}
}

// close stops the health probe.
func (r *runner) close() { r.health.close() }

// run runs script, failing fast while Redis is known to be away.
func (r *runner) run(ctx context.Context, script *redis.Script, keys []string, args []interface{}) (interface{}, error) {
	var res interface{}
	err := r.call(ctx, keys, func(ctx context.Context) error {
		var err error
		res, err = r.eval(ctx, script, keys, args)
		return err
	})
	return res, err
}

// call runs fn behind the health breaker, bounded by the timeout, and sorts
// its error.
func (r *runner) call(ctx context.Context, keys []string, fn func(ctx context.Context) error) error {
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
	}
	err = describe(err, r.timeout, r.secrets)
	var e *Error
	if errors.As(err, &e) && e.outage() {
		r.health.downAt(r.now(), r.cooldown, e, keys)
		return err
	}
	r.health.up()
	if isCorrupt(err) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// bounded runs fn and returns by the time ctx is done, whatever the
// client's options (see bound.Call). When it returns ctx.Err(), fn may
// still run: what it writes must not be read.
func (r *runner) bounded(ctx context.Context, fn func(ctx context.Context) error) error {
	return bound.Call(ctx, r.ctxAware, fn)
}

// eval runs script and returns by the time ctx is done, whatever the
// client's options (see bound.Value).
func (r *runner) eval(ctx context.Context, script *redis.Script, keys []string, args []interface{}) (interface{}, error) {
	return bound.Value(ctx, r.ctxAware, func(ctx context.Context) (interface{}, error) {
		return script.Run(ctx, r.client, keys, args...).Result()
	})
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
// cooldown, then lets one call through to try again. While it fails fast, a
// goroutine of its own (one at most) probes Redis every probeInterval and
// ends the cooldown as soon as Redis answers, so that the store is back
// within a probe of Redis's return rather than a cooldown. A refused login
// is not probed: only the cooldown ends it.
type health struct {
	mu        sync.Mutex
	downUntil time.Time
	down      bool
	probing   bool
	last      *Error

	probe   prober        // nil: no background probe
	timeout time.Duration // bounds one probe
	key     string        // a key of the last failed call, for the probe's routing
	prober  bool          // the probe goroutine runs
	closed  bool
	stop    chan struct{} // closed by close
}

// probeInterval is the pause between two background probes; each pause is
// drawn from [probeInterval, 2*probeInterval) so that a fleet's probes spread.
const probeInterval = 50 * time.Millisecond

func (h *health) enter(now time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.down {
		return nil
	}
	if now.Before(h.downUntil) || h.probing {
		return h.last.fast()
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

func (h *health) downAt(now time.Time, cooldown time.Duration, err *Error, keys []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down, h.probing, h.last = true, false, err
	h.downUntil = now.Add(cooldown)
	if len(keys) > 0 {
		h.key = keys[0]
	}
	if h.probe == nil || h.prober || h.closed || err.auth() {
		return
	}
	if h.stop == nil {
		h.stop = make(chan struct{})
	}
	h.prober = true
	go h.probeLoop(h.stop)
}

// close stops the probe goroutine for good.
func (h *health) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		if h.stop != nil {
			close(h.stop)
		}
	}
}

// probeLoop probes Redis until it answers, the health is up again, or
// close. The first probe runs at once: besides ending the cooldown early,
// its error names the cause that go-redis may have hidden behind a timeout
// (a dial refused in the pool's background), for the calls that fail fast.
func (h *health) probeLoop(stop <-chan struct{}) {
	var wait <-chan time.Time
	for {
		if wait != nil {
			select {
			case <-stop:
				h.stopProbing()
				return
			case <-wait:
			}
		}
		h.mu.Lock()
		if !h.down || h.closed {
			h.prober = false
			h.mu.Unlock()
			return
		}
		key := h.key
		h.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
		err := h.probe(ctx, key)
		cancel()

		h.mu.Lock()
		switch {
		case !h.down || h.closed:
		case err == nil:
			h.downUntil = time.Time{} // the next call tries Redis
		default:
			if e, ok := describe(err, h.timeout, nil).(*Error); ok {
				h.last = e // names a cause the call's error may hide
			}
			h.mu.Unlock()
			wait = time.After(probeInterval + time.Duration(rand.Int63n(int64(probeInterval))))
			continue
		}
		h.prober = false
		h.mu.Unlock()
		return
	}
}

func (h *health) stopProbing() {
	h.mu.Lock()
	h.prober = false
	h.mu.Unlock()
}
