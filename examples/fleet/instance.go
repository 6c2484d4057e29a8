package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/retry"
	"github.com/breakwater-go/breakwater/store"
	"github.com/breakwater-go/breakwater/transport"
)

// instance is one pod of the fleet: its own Redis client, store, transport
// (with its own breaker objects) and HTTP client, as separate processes
// would have. Only the Redis keys they name may be shared.
type instance struct {
	id     int
	redis  *redis.Client
	store  *store.Store
	tr     *transport.Transport
	client *http.Client
	wire   *wire

	// Written by the instance's own goroutine; read after it has ended.
	calls, rejected, okCalls int64
	firstOK                  time.Time // first successful call after the recovery
}

// newInstance builds instance id, keeping its breakers under prefix; their
// transitions go to the feed and the trips to t.
func newInstance(cfg config, id int, prefix string, f *feed, t *trips) (*instance, error) {
	in := &instance{id: id, redis: redis.NewClient(cfg.Redis)}
	st, err := store.New(in.redis, store.Options{Prefix: prefix, Timeout: cfg.StoreTimeout, IdleExpiry: time.Minute})
	if err != nil {
		_ = in.redis.Close()
		return nil, err
	}
	in.store = st
	in.wire = &wire{id: prefix, next: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 10 * time.Second}}

	in.tr, err = transport.New(transport.Options{
		Store: st,
		Settings: breaker.Settings{
			ConsecutiveFailures: cfg.Threshold,
			OpenDuration:        cfg.Open,
			ProbeLease:          2 * time.Second,
			Instance:            fmt.Sprintf("pod-%02d", id+1),
		},
		Retry: retry.Policy{
			MaxAttempts: cfg.Attempts,
			BaseDelay:   20 * time.Millisecond,
			MaxDelay:    200 * time.Millisecond,
			OnEvent:     f.retry,
		},
		Base: in.wire,
		// The fleet calls one host, so each transport makes one breaker.
		OnBreaker: func(b *breaker.Breaker) {
			in.wire.breaker.Store(b)
			b.Listen(func(e breaker.Event) {
				f.breaker(prefix, id, e)
				t.add(prefix, e)
			})
		},
	})
	if err != nil {
		in.close()
		return nil, err
	}
	in.client = &http.Client{Transport: in.tr, Timeout: 5 * time.Second}
	return in, nil
}

// call makes one call to url and tallies it. recovered is when the
// downstream came back (zero while it has not).
func (in *instance) call(ctx context.Context, url string, recovered time.Time) {
	in.calls++
	sent := in.wire.sent.Load()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return
	}
	resp, err := in.client.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			in.okCalls++
			if !recovered.IsZero() && in.firstOK.IsZero() {
				in.firstOK = time.Now()
			}
		}
		return
	}
	if errors.Is(err, breaker.ErrOpen) && in.wire.sent.Load() == sent {
		in.rejected++
	}
}

func (in *instance) close() {
	if in.tr != nil {
		_ = in.tr.Close()
	}
	if in.store != nil {
		_ = in.store.Close()
	}
	_ = in.redis.Close()
	in.wire.next.CloseIdleConnections()
}

// wire is the instance's connection to the network, under the transport:
// every request that leaves the instance passes here. It counts them, and
// marks probes for the downstream's count.
type wire struct {
	id      string // names the instance's breaker (its store prefix) in probeHeader
	next    *http.Transport
	sent    atomic.Int64
	breaker atomic.Pointer[breaker.Breaker]
}

// RoundTrip sends req, marked with probeHeader when the instance's breaker
// is half-open: then the transport admitted it as the breaker's probe.
func (w *wire) RoundTrip(req *http.Request) (*http.Response, error) {
	w.sent.Add(1)
	if b := w.breaker.Load(); b != nil && b.State() == breaker.HalfOpen && b.Decider() == breaker.DecideShared {
		req = req.Clone(req.Context())
		req.Header.Set(probeHeader, w.id)
	}
	return w.next.RoundTrip(req)
}
