package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/retry"
	"github.com/breakwater-go/breakwater/store"
	"github.com/breakwater-go/breakwater/transport"
)

// probeHeader marks a request sent under a half-open probe lease, for the
// downstream's count (examples/downstream).
const probeHeader = "X-Breakwater-Probe"

// service is one instance: a Redis client, a store, a transport with the
// downstream host's shared breaker, and the counts of what it did.
type service struct {
	cfg    config
	log    *logger
	client *redis.Client
	store  *store.Store
	tr     *transport.Transport
	br     *breaker.Breaker // the downstream host's breaker
	http   *http.Client
	start  time.Time

	calls  counts
	events eventCounts
}

// counts are the calls of one instance. An attempt admitted by the breaker
// ends as exactly one of succeeded, failed or ignored, as the breaker
// counts it.
type counts struct {
	made      atomic.Int64 // calls started
	rejected  atomic.Int64 // calls the breaker stopped
	errored   atomic.Int64 // calls that ended with another error before any attempt (breaker closed, ...)
	admitted  atomic.Int64 // attempts the breaker let through
	succeeded atomic.Int64
	failed    atomic.Int64 // transport errors, 5xx and 429
	ignored   atomic.Int64 // attempts cancelled by the caller: not counted by the breaker
	probes    atomic.Int64 // attempts sent under a half-open probe lease
}

// eventCounts count the breaker's events as this instance heard them.
type eventCounts struct {
	transitions      atomic.Int64
	trips            atomic.Int64 // transitions to open
	localTransitions atomic.Int64 // the local breaker's, while Redis is away
	storeUnavailable atomic.Int64
	storeRecovered   atomic.Int64
	unreported       atomic.Int64 // outcomes not reported while Redis was away
	storeUp          atomic.Bool
}

// newService connects nothing yet: it makes the client, store and
// transport, and the downstream's breaker, which starts following the
// shared state.
func newService(cfg config, log *logger) (*service, error) {
	ro := *cfg.redis
	ro.ContextTimeoutEnabled = true // the store bounds every call by its context
	ro.DisableIdentity = true       // no CLIENT SETINFO: older servers reject it
	client := redis.NewClient(&ro)
	st, err := store.New(client, cfg.Store)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("service: %w", err)
	}
	s := &service{cfg: cfg, log: log, client: client, store: st, start: time.Now()}
	s.events.storeUp.Store(true)
	s.tr, err = transport.New(transport.Options{
		Store:     st,
		Settings:  cfg.Breaker,
		Retry:     retry.Policy{MaxAttempts: cfg.Attempts, BaseDelay: 50 * time.Millisecond, MaxDelay: time.Second},
		Base:      &attempts{s: s, base: http.DefaultTransport},
		OnBreaker: func(b *breaker.Breaker) { b.Listen(s.heard) },
		// The service keeps its downstream's breaker (s.br) for its life:
		// the transport must not close it when the traffic pauses.
		IdleTimeout: -1,
	})
	if err != nil {
		st.Close()
		client.Close()
		return nil, fmt.Errorf("service: %w", err)
	}
	s.br, err = s.tr.Breaker(cfg.Downstream.Host)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("service: %w", err)
	}
	s.http = &http.Client{Transport: s.tr, Timeout: cfg.CallTimeout}
	return s, nil
}

// close releases the breakers, the store and the client.
func (s *service) close() {
	_ = s.tr.Close()
	_ = s.store.Close()
	_ = s.client.Close()
}

// heard logs and counts an event of the breaker.
func (s *service) heard(e breaker.Event) {
	switch e.Kind {
	case breaker.StateChanged:
		if e.Decider == breaker.DecideLocal {
			s.events.localTransitions.Add(1)
			s.log.printf("breaker %s: local breaker %s -> %s (%s), deciding while Redis is away", e.Name, e.From, e.To, e.Reason)
			return
		}
		s.events.transitions.Add(1)
		if e.To == breaker.Open {
			s.events.trips.Add(1)
		}
		by := e.Instance
		if e.Local {
			by += " (this instance)"
		}
		msg := fmt.Sprintf("breaker %s: %s -> %s (%s) by %s, generation %d", e.Name, e.From, e.To, e.Reason, by, e.Generation)
		if e.To == breaker.Open {
			msg += fmt.Sprintf(", after %d failures, next probe in %v", e.Counts.PreviousFailures, e.NextProbeIn.Round(time.Millisecond))
		}
		s.log.printf("%s", msg)
	case breaker.StoreUnavailable:
		s.events.storeUnavailable.Add(1)
		s.events.storeUp.Store(false)
		s.log.printf("breaker %s: Redis unavailable (%v); deciding locally: fallback %s", e.Name, e.Err, e.Fallback)
	case breaker.StoreRecovered:
		s.events.storeRecovered.Add(1)
		s.events.unreported.Add(int64(e.Unreported))
		s.events.storeUp.Store(true)
		s.log.printf("breaker %s: Redis recovered; %d outcomes were not reported while it was away", e.Name, e.Unreported)
	}
}

// result is the outcome of one call, as GET /work returns it.
type result struct {
	Outcome string `json:"outcome"` // "succeeded", "failed", "rejected" or "error"
	Status  int    `json:"status,omitempty"`
	Error   string `json:"error,omitempty"`
	// NextProbeInMS is, for a rejected call, how long until the next probe.
	NextProbeInMS int64 `json:"next_probe_in_ms,omitempty"`
}

// call makes one call to the downstream through the transport.
func (s *service) call(ctx context.Context) result {
	s.calls.made.Add(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.Downstream.String(), nil)
	if err != nil {
		s.calls.errored.Add(1)
		return result{Outcome: "error", Error: err.Error()}
	}
	resp, err := s.http.Do(req)
	if err != nil {
		var oe *breaker.OpenError
		switch {
		case errors.As(err, &oe):
			s.calls.rejected.Add(1)
			return result{Outcome: "rejected", Error: oe.Error(), NextProbeInMS: oe.NextProbeIn.Milliseconds()}
		case errors.Is(err, breaker.ErrOpen):
			s.calls.rejected.Add(1)
			return result{Outcome: "rejected", Error: err.Error()}
		}
		if errors.Is(err, breaker.ErrClosed) {
			s.calls.errored.Add(1) // no attempt was made
			return result{Outcome: "error", Error: err.Error()}
		}
		// The attempts' outcomes were counted by the attempts RoundTripper.
		return result{Outcome: "failed", Error: err.Error()}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		return result{Outcome: "failed", Status: resp.StatusCode}
	}
	return result{Outcome: "succeeded", Status: resp.StatusCode}
}

// attempts is the transport's base RoundTripper: it sees every attempt the
// breaker admitted, counts its outcome as the breaker does, and marks
// probes for the downstream.
type attempts struct {
	s    *service
	base http.RoundTripper
}

func (a *attempts) RoundTrip(req *http.Request) (*http.Response, error) {
	s := a.s
	s.calls.admitted.Add(1)
	// A half-open breaker admits nothing but probes: an admitted attempt
	// while this instance sees it half-open holds one of the fleet's
	// probe leases.
	if s.br != nil && s.br.State() == breaker.HalfOpen && s.br.Decider() == breaker.DecideShared {
		s.calls.probes.Add(1)
		req = req.Clone(req.Context())
		req.Header.Set(probeHeader, "1")
	}
	resp, err := a.base.RoundTrip(req)
	switch {
	case err != nil && errors.Is(err, context.Canceled) && req.Context().Err() != nil:
		s.calls.ignored.Add(1) // breaker.DefaultClassify ignores it too
	case err != nil:
		s.calls.failed.Add(1)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		s.calls.failed.Add(1)
	default:
		s.calls.succeeded.Add(1)
	}
	return resp, err
}

// load calls the downstream every interval on each of workers goroutines
// until ctx ends; calls in flight then finish (they are bounded by
// CALL_TIMEOUT), so that every admitted call's outcome is reported.
func (s *service) load(ctx context.Context) {
	if s.cfg.Interval <= 0 {
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < s.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(s.cfg.Interval)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				s.call(context.Background())
			}
		}()
	}
	wg.Wait()
}

// handler serves GET /status, GET /work and GET /healthz.
func (s *service) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		writeJSON(w, http.StatusOK, s.status(ctx, true))
	})
	mux.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
		res := s.call(r.Context())
		code := http.StatusOK
		switch res.Outcome {
		case "failed":
			code = http.StatusBadGateway
		case "rejected", "error":
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, res)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
