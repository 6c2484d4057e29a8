package transport_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/fakeclock"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/retry"
	"github.com/breakwater-go/breakwater/store"
	"github.com/breakwater-go/breakwater/transport"
)

// okBase answers every request 200 without a network.
type okBase struct{}

func (okBase) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")), Request: req}, nil
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestTransportBoundsItsBreakers: 10,000 distinct hosts through one
// transport keep at most MaxBreakers breakers in memory, and the heap does
// not grow with the hosts. The store is a real redis-server, so that the
// shared state lives outside the measured heap.
func TestTransportBoundsItsBreakers(t *testing.T) {
	const (
		maxBreakers = 100
		hosts       = 10000
		// bound on the heap's growth from 200 hosts to 10,000: a breaker
		// costs about 1.4 KiB, so 9,800 kept would take over 13 MiB.
		bound = 2 << 20
	)
	srv := redistest.Start(t)
	st, err := store.New(srv.Client(t), store.Options{Prefix: "hosts"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tr, err := transport.New(transport.Options{Store: st, MaxBreakers: maxBreakers, Base: okBase{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	get := func(i int) {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://host-%d.example/", i), nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("host %d: %v", i, err)
		}
		resp.Body.Close()
		if n := tr.Breakers(); n > maxBreakers {
			t.Fatalf("after host %d: %d breakers, want at most %d", i, n, maxBreakers)
		}
	}
	for i := 0; i < 2*maxBreakers; i++ {
		get(i)
	}
	before := heapAlloc()
	for i := 2 * maxBreakers; i < hosts; i++ {
		get(i)
	}
	after := heapAlloc()
	growth := int64(after) - int64(before)
	t.Logf("heap after %d hosts: %d KiB; after %d: %d KiB (growth %d KiB); %d breakers kept",
		2*maxBreakers, before>>10, hosts, after>>10, growth>>10, tr.Breakers())
	if growth > bound {
		t.Errorf("heap grew by %d KiB over %d hosts, want at most %d KiB", growth>>10, hosts-2*maxBreakers, bound>>10)
	}
	if n := tr.Breakers(); n != maxBreakers {
		t.Errorf("breakers kept: got %d, want %d", n, maxBreakers)
	}
	// A host whose breaker was evicted finds its shared state again.
	req, _ := http.NewRequest("GET", "http://host-0.example/", nil)
	if resp, err := tr.RoundTrip(req); err != nil {
		t.Errorf("an evicted host again: %v", err)
	} else {
		resp.Body.Close()
	}
}

func TestTransportSettingsPerHost(t *testing.T) {
	fragile, sturdy := newServer(t, status(503)), newServer(t, status(503))
	var mu sync.Mutex
	asked := map[string]int{}
	tr, _ := newTransport(t, nil, transport.Options{
		Settings: breaker.Settings{ConsecutiveFailures: 3, OpenDuration: time.Minute},
		SettingsFor: func(host string, shared breaker.Settings) breaker.Settings {
			mu.Lock()
			asked[host]++
			mu.Unlock()
			if host == fragile.host() {
				shared.ConsecutiveFailures = 1
			}
			return shared
		},
		Retry: retry.Policy{MaxAttempts: 1},
	})
	client := &http.Client{Transport: tr}
	for i := 0; i < 2; i++ {
		for _, s := range []*server{fragile, sturdy} {
			if resp, err := client.Get(s.URL); err == nil {
				resp.Body.Close()
			}
		}
	}
	if got := fragile.hits.Load(); got != 1 {
		t.Errorf("requests the fragile host saw: got %d, want 1 (its breaker opens after 1 failure)", got)
	}
	if got := sturdy.hits.Load(); got != 2 {
		t.Errorf("requests the sturdy host saw: got %d, want 2 (the shared threshold is 3)", got)
	}
	for host, want := range map[string]breaker.State{fragile.host(): breaker.Open, sturdy.host(): breaker.Closed} {
		b, err := tr.Breaker(host)
		if err != nil {
			t.Fatal(err)
		}
		// The shared state (this instance's view may lag it on a loaded machine).
		if snap, err := b.Snapshot(context.Background()); err != nil || snap.State != want {
			t.Errorf("breaker of %s: got %v (%v), want %v", host, snap.State, err, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if asked[fragile.host()] != 1 || asked[sturdy.host()] != 1 {
		t.Errorf("SettingsFor calls: got %v, want one per host", asked)
	}
}

func TestTransportBadSettingsForAHost(t *testing.T) {
	srv := newServer(t, status(200))
	tr, rec := newTransport(t, nil, transport.Options{
		SettingsFor: func(string, breaker.Settings) breaker.Settings { return breaker.Settings{OpenJitter: 5} },
	})
	_, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if !errors.Is(err, breaker.ErrInvalidSettings) || !strings.Contains(err.Error(), "OpenJitter") {
		t.Errorf("got %v, want an error matching breaker.ErrInvalidSettings naming OpenJitter", err)
	}
	if rec.attempts.Load() != 0 {
		t.Errorf("attempts: got %d, want 0", rec.attempts.Load())
	}
}

// TestTransportRateLimitStorm: a host answering 429 to everything is
// retried as its Retry-After says, and its breaker stays closed: a rate
// limit is not an outage. With CountRateLimits, the 429s open it.
func TestTransportRateLimitStorm(t *testing.T) {
	for _, count := range []bool{false, true} {
		t.Run("CountRateLimits="+strconv.FormatBool(count), func(t *testing.T) {
			srv := newServer(t, func(n int64, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", "0")
				status(429)(n, w, nil)
			})
			tr, _ := newTransport(t, nil, transport.Options{
				Settings:        breaker.Settings{ConsecutiveFailures: 5, OpenDuration: time.Minute},
				Retry:           retry.Policy{MaxAttempts: 3},
				CountRateLimits: count,
			})
			client := &http.Client{Transport: tr}
			var openErrs int
			for i := 0; i < 20; i++ {
				resp, err := client.Get(srv.URL)
				switch {
				case errors.Is(err, breaker.ErrOpen):
					openErrs++
				case err != nil:
					t.Fatal(err)
				default:
					if resp.StatusCode != 429 {
						t.Errorf("got %d, want the last 429", resp.StatusCode)
					}
					resp.Body.Close()
				}
			}
			b, err := tr.Breaker(srv.host())
			if err != nil {
				t.Fatal(err)
			}
			snap, err := b.Snapshot(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !count {
				if snap.State != breaker.Closed || openErrs != 0 || snap.Counts.TotalFailures != 0 {
					t.Errorf("got state %v, %d refusals, %d failures counted; want closed, 0, 0", snap.State, openErrs, snap.Counts.TotalFailures)
				}
				if got := srv.hits.Load(); got != 60 {
					t.Errorf("requests the server saw: got %d, want 60 (3 attempts each)", got)
				}
				return
			}
			if snap.State != breaker.Open || openErrs == 0 {
				t.Errorf("got state %v and %d refusals, want open and some", snap.State, openErrs)
			}
		})
	}
}

// TestRoundTripRetryAfterPastTheDeadline: a Retry-After the request's
// deadline (http.Client.Timeout) cannot wait for returns the response at
// once, instead of sleeping until the deadline and failing.
func TestRoundTripRetryAfterPastTheDeadline(t *testing.T) {
	srv := newServer(t, func(n int64, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "5")
		status(503)(n, w, nil)
	})
	var decided time.Time
	var reason []retry.Event
	tr, _ := newTransport(t, nil, transport.Options{Retry: retry.Policy{MaxAttempts: 3, OnEvent: func(ev retry.Event) {
		decided = time.Now()
		reason = append(reason, ev)
	}}})
	client := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	began := time.Now()
	resp, err := client.Get(srv.URL)
	returned := time.Now()
	if err != nil {
		t.Fatalf("got error %v, want the 503 response", err)
	}
	if body := readBody(t, resp); resp.StatusCode != 503 || body != "attempt 1" {
		t.Errorf("got %d %q, want 503 %q", resp.StatusCode, body, "attempt 1")
	}
	if len(reason) != 1 || reason[0].WillRetry {
		t.Errorf("events: got %+v, want one attempt and no retry", reason)
	}
	took := returned.Sub(decided)
	t.Logf("returned %v after deciding, %v after the request began", took, returned.Sub(began))
	if took > 10*time.Millisecond {
		t.Errorf("returned %v after deciding not to wait, want within 10ms", took)
	}
	if got := srv.hits.Load(); got != 1 {
		t.Errorf("requests the server saw: got %d, want 1", got)
	}
}

func TestCheckRetry(t *testing.T) {
	t.Run("sees the response and retries a success", func(t *testing.T) {
		// A 200 whose header says the result is not ready yet.
		srv := newServer(t, func(n int64, w http.ResponseWriter, _ *http.Request) {
			if n < 3 {
				w.Header().Set("X-Status", "pending")
			}
			status(200)(n, w, nil)
		})
		var seen []string
		tr, rec := newTransport(t, nil, transport.Options{
			Retry: retry.Policy{MaxAttempts: 5},
			CheckRetry: func(ctx context.Context, resp *http.Response, err error) (bool, error) {
				if err != nil {
					seen = append(seen, "error")
					return transport.DefaultCheckRetry(ctx, resp, err)
				}
				seen = append(seen, strconv.Itoa(resp.StatusCode)+" "+resp.Header.Get("X-Status"))
				return resp.Header.Get("X-Status") == "pending", nil
			},
		})
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		if body := readBody(t, resp); body != "attempt 3" {
			t.Errorf("body: got %q, want %q", body, "attempt 3")
		}
		if got := strings.Join(seen, ","); got != "200 pending,200 pending,200 " {
			t.Errorf("CheckRetry saw %q", got)
		}
		if got := rec.closed(); fmt.Sprint(got) != "[true true true]" {
			t.Errorf("response bodies closed: got %v, want [true true true]", got)
		}
	})
	t.Run("sees the error", func(t *testing.T) {
		var seen []error
		tr, err := transport.New(transport.Options{
			Store: newStore(t),
			Base:  roundTripperFunc(func(*http.Request) (*http.Response, error) { return nil, errBackend }),
			CheckRetry: func(_ context.Context, resp *http.Response, err error) (bool, error) {
				seen = append(seen, err)
				return false, nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		req, _ := http.NewRequest("GET", "http://backend.example/", nil)
		_, err = tr.RoundTrip(req)
		if !errors.Is(err, errBackend) || len(seen) != 1 || !errors.Is(seen[0], errBackend) {
			t.Errorf("got %v, CheckRetry saw %v; want errBackend once", err, seen)
		}
	})
	t.Run("an error stops retrying", func(t *testing.T) {
		srv := newServer(t, status(503))
		errStop := errors.New("stop: the cart is gone")
		tr, rec := newTransport(t, nil, transport.Options{
			CheckRetry: func(context.Context, *http.Response, error) (bool, error) { return true, errStop },
		})
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		if !errors.Is(err, errStop) || srv.hits.Load() != 1 {
			t.Errorf("got %v after %d requests, want errStop after 1", err, srv.hits.Load())
		}
		if got := rec.closed(); fmt.Sprint(got) != "[true]" {
			t.Errorf("response bodies closed: got %v, want [true]", got)
		}
	})
	t.Run("Retry.Retryable still decides without CheckRetry", func(t *testing.T) {
		srv := newServer(t, statuses(500, 200))
		tr, _ := newTransport(t, nil, transport.Options{Retry: retry.Policy{Retryable: func(err error) bool {
			var se *retry.StatusError
			return errors.As(err, &se) && se.StatusCode == 500
		}}})
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || srv.hits.Load() != 2 {
			t.Errorf("got %d after %d requests, want 200 after 2", resp.StatusCode, srv.hits.Load())
		}
	})
}

var errBackend = errors.New("backend: connection refused")

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestPrepareRetry(t *testing.T) {
	var mu sync.Mutex
	var headers []string
	srv := newServer(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		headers = append(headers, r.Header.Get("X-Retry"))
		mu.Unlock()
		status(503)(n, w, r)
	})
	retries := 0
	tr, _ := newTransport(t, nil, transport.Options{PrepareRetry: func(r *http.Request) error {
		retries++
		r.Header.Set("X-Retry", strconv.Itoa(retries))
		return nil
	}})
	req, _ := http.NewRequest("PUT", srv.URL, strings.NewReader("payload"))
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	if got := fmt.Sprintf("%q", headers); got != `["" "1" "2"]` {
		t.Errorf("X-Retry headers the server saw: got %s, want none, then 1 and 2", got)
	}
	mu.Unlock()
	if req.Header.Get("X-Retry") != "" {
		t.Error("PrepareRetry changed the caller's request")
	}
	for i, b := range srv.received() {
		if b != "payload" {
			t.Errorf("request %d: body %q, want the rewound payload", i+1, b)
		}
	}

	errSign := errors.New("sign: key expired")
	tr, _ = newTransport(t, nil, transport.Options{PrepareRetry: func(*http.Request) error { return errSign }})
	hits := srv.hits.Load()
	_, err = (&http.Client{Transport: tr}).Get(srv.URL)
	if !errors.Is(err, errSign) || srv.hits.Load()-hits != 1 {
		t.Errorf("failing PrepareRetry: got %v after %d requests, want errSign after 1", err, srv.hits.Load()-hits)
	}
}

// TestAttemptTimeout: an attempt that gets no response headers within
// AttemptTimeout is abandoned, counted as a failure and retried; the
// response that comes in time stays readable after RoundTrip returns.
func TestAttemptTimeout(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	srv := newServer(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			<-r.Context().Done() // hangs until the attempt is abandoned
			return
		}
		status(200)(n, w, r)
	})
	var events []retry.Event
	tr, _ := newTransport(t, nil, transport.Options{
		AttemptTimeout: time.Second,
		Retry: retry.Policy{Clock: clock, Jitter: retry.JitterNone, BaseDelay: 10 * time.Millisecond,
			OnEvent: func(ev retry.Event) { events = append(events, ev) }},
	})
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
		done <- result{resp, err}
	}()
	// waitTimer waits for a timer on the clock (or RoundTrip's end).
	waitTimer := func(what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
	for srv.hits.Load() == 0 {
		waitTimer("the first attempt's timer") // and for the server to have the request too
		runtime.Gosched()
	}
	clock.Advance(time.Second) // the first attempt times out
	waitTimer("the backoff")
	clock.Advance(10 * time.Millisecond)
	r := <-done
	if r.err != nil {
		t.Fatalf("got %v, want the second attempt's response", r.err)
	}
	if body := readBody(t, r.resp); body != "attempt 2" {
		t.Errorf("body: got %q, want %q", body, "attempt 2")
	}
	if len(events) != 2 || events[0].Kind != retry.KindTimeout || !events[0].WillRetry ||
		!strings.Contains(events[0].Err.Error(), "attempt timed out after 1s") {
		t.Errorf("events: got %+v, want a timeout retried, then a success", events)
	}
	var ne interface{ Timeout() bool }
	if len(events) > 0 && (!errors.Is(events[0].Err, context.DeadlineExceeded) || !errors.As(events[0].Err, &ne) || !ne.Timeout()) {
		t.Errorf("the timeout's error %v: want one matching context.DeadlineExceeded with Timeout true", events[0].Err)
	}
	if c := counts(t, tr, srv.host()); c.Failures != 1 || c.Successes != 1 {
		t.Errorf("breaker counts: got %d failures and %d successes, want 1 and 1", c.Failures, c.Successes)
	}
}

func TestLogger(t *testing.T) {
	srv := newServer(t, status(503))
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	tr, _ := newTransport(t, nil, transport.Options{
		Logger:   logger,
		Settings: breaker.Settings{ConsecutiveFailures: 3},
		Retry:    retry.Policy{MaxAttempts: 2, Jitter: retry.JitterNone, BaseDelay: time.Millisecond},
	})
	client := &http.Client{Transport: tr}
	for i := 0; i < 2; i++ {
		if resp, err := client.Get(srv.URL + "/items"); err == nil {
			resp.Body.Close()
		}
	}
	u := srv.URL + "/items"
	want := []string{
		`level=INFO msg="breakwater: retrying request" url=` + u + ` attempt=1 max_attempts=2 kind=other backoff=1ms error="retry: HTTP 503 Service Unavailable"`,
		`level=WARN msg="breakwater: request failed" url=` + u + ` method=GET attempts=2 status=503`,
		`level=INFO msg="breakwater: retrying request" url=` + u + ` attempt=1 max_attempts=2 kind=other backoff=1ms error="retry: HTTP 503 Service Unavailable"`,
		`level=DEBUG msg="breakwater: breaker refused request" url=` + u + ` method=GET attempts=1 breaker=` + srv.host(),
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("log:\n%s\nwant %d lines", buf.String(), len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("log line %d:\n got %s\nwant %s…", i+1, lines[i], w)
		}
	}
}
