package transport_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/fakeclock"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/retry"
	"github.com/breakwater-go/breakwater/store"
	"github.com/breakwater-go/breakwater/transport"
)

// server is an httptest server that fails in scripted ways. handle gets
// the number of the request (1 for the first).
type server struct {
	*httptest.Server
	hits   atomic.Int64
	mu     sync.Mutex
	bodies []string
}

func newServer(t *testing.T, handle func(n int64, w http.ResponseWriter, r *http.Request)) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies = append(s.bodies, string(body))
		s.mu.Unlock()
		handle(s.hits.Add(1), w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// host is the name of the server's breaker: its URL's host.
func (s *server) host() string { return s.Listener.Addr().String() }

func (s *server) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}

// status answers every request with code and the body "attempt <n>".
func status(code int) func(int64, http.ResponseWriter, *http.Request) {
	return func(n int64, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		fmt.Fprintf(w, "attempt %d", n)
	}
}

// statuses answers request n with codes[n-1], and the last code after.
func statuses(codes ...int) func(int64, http.ResponseWriter, *http.Request) {
	return func(n int64, w http.ResponseWriter, r *http.Request) {
		status(codes[min(int(n), len(codes))-1])(n, w, r)
	}
}

// recorder is a Base that counts attempts and tracks response bodies.
type recorder struct {
	base     http.RoundTripper
	attempts atomic.Int64
	mu       sync.Mutex
	bodies   []*trackedBody
}

type trackedBody struct {
	io.ReadCloser
	closed atomic.Bool
}

func (b *trackedBody) Close() error {
	b.closed.Store(true)
	return b.ReadCloser.Close()
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.attempts.Add(1)
	resp, err := r.base.RoundTrip(req)
	if resp != nil {
		tb := &trackedBody{ReadCloser: resp.Body}
		resp.Body = tb
		r.mu.Lock()
		r.bodies = append(r.bodies, tb)
		r.mu.Unlock()
	}
	return resp, err
}

// closed reports which response bodies were closed, in order.
func (r *recorder) closed() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]bool, len(r.bodies))
	for i, b := range r.bodies {
		out[i] = b.closed.Load()
	}
	return out
}

// newStore returns a breaker store on a miniredis of the test's own.
func newStore(t *testing.T) *store.Store {
	t.Helper()
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	// (a generous timeout: these tests are not about a slow store, and a
	// loaded machine must not make the breakers decide locally)
	st, err := store.New(c, store.Options{Prefix: "t", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// newTransport makes a transport on st (a fresh store when nil) whose Base
// is a recorder over a fresh http.Transport. Zero fields get test defaults:
// breakers that do not trip, three attempts 100µs apart.
func newTransport(t *testing.T, st breaker.Store, opts transport.Options) (*transport.Transport, *recorder) {
	t.Helper()
	if st == nil {
		st = newStore(t)
	}
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	rec := &recorder{base: base}
	opts.Store = st
	opts.Base = rec
	if opts.Settings.ConsecutiveFailures == 0 {
		opts.Settings.ConsecutiveFailures = 1000
	}
	if opts.Retry.MaxAttempts == 0 {
		opts.Retry.MaxAttempts = 3
	}
	if opts.Retry.BaseDelay == 0 {
		opts.Retry.BaseDelay = 100 * time.Microsecond
	}
	tr, err := transport.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr, rec
}

func counts(t *testing.T, tr *transport.Transport, host string) breaker.Counts {
	t.Helper()
	br, err := tr.Breaker(host)
	if err != nil {
		t.Fatal(err)
	}
	if err := br.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	snap, err := br.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return snap.Counts
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

func TestRoundTripRetriesAsThePolicySays(t *testing.T) {
	type handler = func(int64, http.ResponseWriter, *http.Request)
	tests := []struct {
		name       string
		method     string
		header     string // a header to set, "Name: value"
		body       string
		noGetBody  bool
		retryPOST  bool
		handle     handler
		wantHits   int64
		wantStatus int
	}{
		{name: "GET 503", method: "GET", handle: status(503), wantHits: 3, wantStatus: 503},
		{name: "GET 502", method: "GET", handle: status(502), wantHits: 3, wantStatus: 502},
		{name: "GET 504", method: "GET", handle: status(504), wantHits: 3, wantStatus: 504},
		{name: "GET 429", method: "GET", handle: status(429), wantHits: 3, wantStatus: 429},
		{name: "GET 503 then 200", method: "GET", handle: statuses(503, 503, 200), wantHits: 3, wantStatus: 200},
		{name: "GET 429 then 200", method: "GET", handle: statuses(429, 200), wantHits: 2, wantStatus: 200},
		{name: "GET 200", method: "GET", handle: status(200), wantHits: 1, wantStatus: 200},
		{name: "GET 500 is not retried", method: "GET", handle: status(500), wantHits: 1, wantStatus: 500},
		{name: "GET 501", method: "GET", handle: status(501), wantHits: 1, wantStatus: 501},
		{name: "GET 404", method: "GET", handle: status(404), wantHits: 1, wantStatus: 404},
		{name: "GET 408", method: "GET", handle: status(408), wantHits: 3, wantStatus: 408},
		{name: "HEAD 503", method: "HEAD", handle: status(503), wantHits: 3, wantStatus: 503},
		{name: "DELETE 503", method: "DELETE", handle: status(503), wantHits: 3, wantStatus: 503},
		{name: "OPTIONS 503", method: "OPTIONS", handle: status(503), wantHits: 3, wantStatus: 503},
		{name: "PUT 503 rewinds the body", method: "PUT", body: "payload", handle: status(503), wantHits: 3, wantStatus: 503},
		{name: "PUT 503 without GetBody", method: "PUT", body: "payload", noGetBody: true, handle: status(503), wantHits: 1, wantStatus: 503},
		{name: "POST 503", method: "POST", body: "payload", handle: status(503), wantHits: 1, wantStatus: 503},
		{name: "POST 500", method: "POST", body: "payload", handle: status(500), wantHits: 1, wantStatus: 500},
		{name: "POST 503 with Idempotency-Key", method: "POST", header: "Idempotency-Key: k1", body: "payload", handle: status(503), wantHits: 3, wantStatus: 503},
		{name: "POST 503 with X-Idempotency-Key", method: "POST", header: "X-Idempotency-Key: k1", body: "payload", handle: status(503), wantHits: 3, wantStatus: 503},
		{name: "POST 500 with Idempotency-Key", method: "POST", header: "Idempotency-Key: k1", body: "payload", handle: status(500), wantHits: 1, wantStatus: 500},
		{name: "POST 503 with RetryPOST", method: "POST", retryPOST: true, body: "payload", handle: status(503), wantHits: 3, wantStatus: 503},
		{name: "POST 503 with RetryPOST, no GetBody", method: "POST", retryPOST: true, body: "payload", noGetBody: true, handle: status(503), wantHits: 1, wantStatus: 503},
		{name: "PATCH 503", method: "PATCH", body: "payload", handle: status(503), wantHits: 1, wantStatus: 503},
		{name: "PATCH 503 with RetryPOST", method: "PATCH", retryPOST: true, body: "payload", handle: status(503), wantHits: 3, wantStatus: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, tt.handle)
			tr, rec := newTransport(t, nil, transport.Options{RetryPOST: tt.retryPOST})
			var body io.Reader
			if tt.body != "" {
				// A reader that can be read once, unknown to net/http
				// (which may replay bytes and strings readers itself).
				body = io.MultiReader(strings.NewReader(tt.body))
			}
			req, err := http.NewRequest(tt.method, srv.URL+"/items", body)
			if err != nil {
				t.Fatal(err)
			}
			var rewinds int64
			if tt.body != "" {
				req.ContentLength = int64(len(tt.body))
				if !tt.noGetBody {
					req.GetBody = func() (io.ReadCloser, error) {
						rewinds++
						return io.NopCloser(io.MultiReader(strings.NewReader(tt.body))), nil
					}
				}
			}
			if name, value, ok := strings.Cut(tt.header, ": "); ok {
				req.Header.Set(name, value)
			}
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				t.Fatalf("Do: got error %v, want a %d response", err, tt.wantStatus)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status: got %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			got := readBody(t, resp)
			if want := fmt.Sprintf("attempt %d", tt.wantHits); tt.method != "HEAD" && got != want {
				t.Errorf("body: got %q, want %q (the last response, unchanged)", got, want)
			}
			if got := srv.hits.Load(); got != tt.wantHits {
				t.Errorf("requests the server saw: got %d, want %d", got, tt.wantHits)
			}
			if tt.body != "" && !tt.noGetBody && rewinds != tt.wantHits-1 {
				t.Errorf("bodies rewound: got %d, want %d", rewinds, tt.wantHits-1)
			}
			for i, b := range srv.received() {
				if b != tt.body {
					t.Errorf("request %d: server got body %q, want %q", i+1, b, tt.body)
				}
			}
			closed := rec.closed()
			for i, c := range closed {
				if !c {
					t.Errorf("response %d of %d: body not closed", i+1, len(closed))
				}
			}
		})
	}
}

func TestRoundTripConnectionFailures(t *testing.T) {
	refused := httptest.NewServer(http.NotFoundHandler())
	refusedURL := refused.URL
	refused.Close()

	tests := []struct {
		name         string
		url          func(t *testing.T) (string, *server)
		timeout      time.Duration
		wantHits     int64
		wantAttempts int64
		wantErr      func(error) bool
	}{
		{
			name:         "connection refused",
			url:          func(*testing.T) (string, *server) { return refusedURL, nil },
			wantAttempts: 3,
			wantErr: func(err error) bool {
				return errors.Is(err, syscall.ECONNREFUSED) && errors.Is(err, retry.ErrExhausted)
			},
		},
		{
			name: "connection reset",
			url: func(t *testing.T) (string, *server) {
				s := newServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
					conn, _, err := w.(http.Hijacker).Hijack()
					if err != nil {
						t.Errorf("hijack: %v", err)
						return
					}
					_ = conn.(*net.TCPConn).SetLinger(0)
					conn.Close()
				})
				return s.URL, s
			},
			wantHits:     3,
			wantAttempts: 3,
			wantErr: func(err error) bool {
				return retry.KindOf(err) == retry.KindConnection && errors.Is(err, retry.ErrExhausted)
			},
		},
		{
			name: "slow server, client timeout",
			url: func(t *testing.T) (string, *server) {
				s := newServer(t, func(_ int64, _ http.ResponseWriter, r *http.Request) {
					<-r.Context().Done()
				})
				return s.URL, s
			},
			timeout:      250 * time.Millisecond, // ample for the request to reach the server
			wantHits:     1,
			wantAttempts: 1,
			wantErr: func(err error) bool {
				var ne net.Error
				return errors.As(err, &ne) && ne.Timeout() && errors.Is(err, context.DeadlineExceeded) &&
					!errors.Is(err, retry.ErrExhausted)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, srv := tt.url(t)
			tr, rec := newTransport(t, nil, transport.Options{})
			client := &http.Client{Transport: tr, Timeout: tt.timeout}
			resp, err := client.Get(u)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("got a %d response, want an error", resp.StatusCode)
			}
			if !tt.wantErr(err) {
				t.Errorf("got error %v (kind %v), not the one wanted", err, retry.KindOf(err))
			}
			if srv != nil {
				if got := srv.hits.Load(); got != tt.wantHits {
					t.Errorf("requests the server saw: got %d, want %d", got, tt.wantHits)
				}
			}
			if got := rec.attempts.Load(); got != tt.wantAttempts {
				t.Errorf("attempts: got %d, want %d", got, tt.wantAttempts)
			}
			host := strings.TrimPrefix(u, "http://")
			if c := counts(t, tr, host); c.Failures != uint64(tt.wantAttempts) || c.Successes != 0 {
				t.Errorf("breaker counts: got %d failures and %d successes, want %d and 0", c.Failures, c.Successes, tt.wantAttempts)
			}
		})
	}
}

func TestRoundTripHonoursRetryAfter(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		code       int
		retryAfter func(now time.Time) string
		wantWaits  []time.Duration
	}{
		{"429 with delay-seconds", 429, func(time.Time) string { return "2" }, []time.Duration{2 * time.Second, 2 * time.Second}},
		{"429 with an HTTP-date", 429, func(now time.Time) string { return now.Add(3 * time.Second).Format(http.TimeFormat) }, []time.Duration{3 * time.Second, 3 * time.Second}},
		{"429 with a date in the past", 429, func(now time.Time) string { return now.Add(-time.Hour).Format(http.TimeFormat) }, []time.Duration{400 * time.Millisecond, 800 * time.Millisecond}},
		{"429 without Retry-After", 429, func(time.Time) string { return "" }, []time.Duration{400 * time.Millisecond, 800 * time.Millisecond}},
		{"429 with a malformed Retry-After", 429, func(time.Time) string { return "soon" }, []time.Duration{400 * time.Millisecond, 800 * time.Millisecond}},
		{"429 asking for more than MaxDelay", 429, func(time.Time) string { return "120" }, []time.Duration{10 * time.Second, 10 * time.Second}},
		{"503 with delay-seconds", 503, func(time.Time) string { return "1" }, []time.Duration{time.Second, time.Second}},
		{"503 without Retry-After", 503, func(time.Time) string { return "" }, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := fakeclock.New(start)
			srv := newServer(t, func(n int64, w http.ResponseWriter, _ *http.Request) {
				if v := tt.retryAfter(clock.Now()); v != "" {
					w.Header().Set("Retry-After", v)
				}
				w.WriteHeader(tt.code)
				fmt.Fprintf(w, "attempt %d", n)
			})
			var mu sync.Mutex
			var backoffs []time.Duration
			tr, _ := newTransport(t, nil, transport.Options{Retry: retry.Policy{
				MaxAttempts: 3,
				BaseDelay:   100 * time.Millisecond,
				Jitter:      retry.JitterNone,
				Clock:       clock,
				OnEvent: func(ev retry.Event) {
					mu.Lock()
					backoffs = append(backoffs, ev.Backoff)
					mu.Unlock()
				},
			}})
			type result struct {
				resp *http.Response
				err  error
			}
			done := make(chan result, 1)
			go func() {
				resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
				done <- result{resp, err}
			}()
			for i, want := range tt.wantWaits {
				clock.BlockUntil(1)
				next, _ := clock.Next()
				if got := next.Sub(clock.Now()); got != want {
					t.Errorf("wait %d: got %v, want %v", i+1, got, want)
				}
				clock.Advance(next.Sub(clock.Now()))
			}
			r := <-done
			if r.err != nil {
				t.Fatalf("got error %v, want the last %d response", r.err, tt.code)
			}
			if got := readBody(t, r.resp); r.resp.StatusCode != tt.code || got != "attempt 3" {
				t.Errorf("got %d %q, want %d %q", r.resp.StatusCode, got, tt.code, "attempt 3")
			}
			if got := srv.hits.Load(); got != 3 {
				t.Errorf("requests the server saw: got %d, want 3", got)
			}
			mu.Lock()
			defer mu.Unlock()
			if want := append(append([]time.Duration(nil), tt.wantWaits...), 0); fmt.Sprint(backoffs) != fmt.Sprint(want) {
				t.Errorf("event backoffs: got %v, want %v", backoffs, want)
			}
		})
	}
}

func TestRoundTripCountsOutcomesForTheBreaker(t *testing.T) {
	tests := []struct {
		code                     int
		wantSuccess, wantFailure uint64
	}{
		{200, 1, 0},
		{301, 1, 0},
		{404, 1, 0},
		{408, 1, 0},
		{429, 0, 0}, // a rate limit is not an outage (see CountRateLimits)
		{500, 0, 1},
		{501, 0, 1},
		{503, 0, 1},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.code), func(t *testing.T) {
			srv := newServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
				if tt.code == 301 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tt.code)
			})
			tr, _ := newTransport(t, nil, transport.Options{Retry: retry.Policy{MaxAttempts: 1}})
			req, _ := http.NewRequest("GET", srv.URL, nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if c := counts(t, tr, srv.host()); c.Successes != tt.wantSuccess || c.Failures != tt.wantFailure {
				t.Errorf("got %d successes and %d failures, want %d and %d", c.Successes, c.Failures, tt.wantSuccess, tt.wantFailure)
			}
		})
	}
}

func TestRoundTripStopsAtAnOpenBreaker(t *testing.T) {
	srv := newServer(t, status(503))
	other := newServer(t, status(200))
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1})
	defer c.Close()
	st, err := store.New(c, store.Options{Prefix: "t"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var mu sync.Mutex
	var events []retry.Event
	reads := &readWaiter{first: make(chan struct{})}
	tr, rec := newTransport(t, st, transport.Options{
		Settings: breaker.Settings{ConsecutiveFailures: 2, OpenDuration: time.Minute, Observer: reads},
		Retry: retry.Policy{MaxAttempts: 5, OnEvent: func(ev retry.Event) {
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		}},
	})
	client := &http.Client{Transport: tr}

	// Two 503s trip the breaker; it refuses the third attempt.
	resp, err := client.Get(srv.URL + "/a")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got a %d response, want an error matching breaker.ErrOpen", resp.StatusCode)
	}
	if !errors.Is(err, breaker.ErrOpen) || !errors.Is(err, retry.ErrExhausted) {
		t.Errorf("got %v, want an error matching breaker.ErrOpen and retry.ErrExhausted", err)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Errorf("requests the server saw: got %d, want 2", got)
	}
	if got := rec.closed(); fmt.Sprint(got) != "[true true]" {
		t.Errorf("response bodies closed: got %v, want [true true]", got)
	}
	mu.Lock()
	if len(events) != 3 || !events[2].GateRefused || events[2].Attempt != 3 || events[2].Name != srv.URL+"/a" {
		t.Errorf("events: got %+v, want 2 attempts and a gate refusal of attempt 3 named %s", events, srv.URL+"/a")
	}
	mu.Unlock()

	// With the breaker open, a request makes no attempt, asks Redis
	// nothing, and fails at once. (Once its subscription is up, a breaker
	// reads its state once, in the background, in case it missed a
	// transition meanwhile: that read is over first.)
	select {
	case <-reads.first:
	case <-time.After(10 * time.Second):
		t.Fatal("the breaker did not read its state after subscribing, within 10s")
	}
	attempts, commands := rec.attempts.Load(), m.CommandCount()
	var took []time.Duration
	for i := 0; i < 21; i++ {
		body := &closeTracker{Reader: strings.NewReader("payload")}
		req, _ := http.NewRequest("PUT", srv.URL+"/b", body)
		began := time.Now()
		_, err = tr.RoundTrip(req)
		took = append(took, time.Since(began))
		var open *breaker.OpenError
		if !errors.As(err, &open) || open.NextProbeIn <= 0 || open.NextProbeIn > time.Minute {
			t.Fatalf("got %v, want a *breaker.OpenError with the time until the next probe", err)
		}
		if !body.closed {
			t.Fatalf("the unsent request body was not closed")
		}
	}
	if got := rec.attempts.Load() - attempts; got != 0 {
		t.Errorf("attempts with the breaker open: got %d, want 0", got)
	}
	if got := m.CommandCount() - commands; got != 0 {
		t.Errorf("Redis commands with the breaker open: got %d, want 0", got)
	}
	checkFast(t, took)
	if got := srv.hits.Load(); got != 2 {
		t.Errorf("requests the server saw: got %d, want still 2", got)
	}

	// Another host has its own breaker.
	resp, err = client.Get(other.URL)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("another host: got %v, %v, want a 200 response", resp, err)
	}
	resp.Body.Close()
}

// checkFast checks that the median request took at most 1ms. (The median,
// because a loaded machine running the race detector may stall any one.)
func checkFast(t *testing.T, took []time.Duration) {
	t.Helper()
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	median := took[len(took)/2]
	t.Logf("%d requests with the breaker open: median %v, slowest %v", len(took), median, took[len(took)-1])
	if median > time.Millisecond {
		t.Errorf("requests with the breaker open: median %v, want at most 1ms", median)
	}
}

type closeTracker struct {
	io.Reader
	closed bool
}

func (c *closeTracker) Close() error {
	c.closed = true
	return nil
}

func TestRoundTripReturnsTheLastResponseWhenTheBudgetRefuses(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer c.Close()
	budget, err := store.NewRetryBudget(c, "api", store.BudgetOptions{Ratio: 1, Floor: store.NoFloor})
	if err != nil {
		t.Fatal(err)
	}
	defer budget.Close()
	srv := newServer(t, status(503))
	tr, rec := newTransport(t, nil, transport.Options{Retry: retry.Policy{MaxAttempts: 5, Budget: budget}})
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if err != nil {
		t.Fatalf("got error %v, want the last 503 response", err)
	}
	// One request earns one retry.
	if got := readBody(t, resp); resp.StatusCode != 503 || got != "attempt 2" {
		t.Errorf("got %d %q, want 503 %q", resp.StatusCode, got, "attempt 2")
	}
	if got := srv.hits.Load(); got != 2 {
		t.Errorf("requests the server saw: got %d, want 2", got)
	}
	if got := rec.closed(); fmt.Sprint(got) != "[true true]" {
		t.Errorf("response bodies closed: got %v, want [true true]", got)
	}
}

func TestRoundTripClosesTheResponseWhenTheContextEnds(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	srv := newServer(t, status(503))
	tr, rec := newTransport(t, nil, transport.Options{Retry: retry.Policy{Clock: clock}})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	done := make(chan error, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if resp != nil {
			resp.Body.Close()
		}
		done <- err
	}()
	clock.BlockUntil(1) // waiting to retry
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want an error matching context.Canceled", err)
	}
	if got := srv.hits.Load(); got != 1 {
		t.Errorf("requests the server saw: got %d, want 1", got)
	}
	if got := rec.closed(); fmt.Sprint(got) != "[true]" {
		t.Errorf("response bodies closed: got %v, want [true]", got)
	}
}

func TestRoundTripEventsNameTheURL(t *testing.T) {
	srv := newServer(t, statuses(503, 200))
	var names []string
	tr, _ := newTransport(t, nil, transport.Options{Retry: retry.Policy{OnEvent: func(ev retry.Event) {
		names = append(names, ev.Name)
	}}})
	u, _ := url.Parse(srv.URL + "/items?page=2")
	u.User = url.UserPassword("alice", "secret")
	resp, err := (&http.Client{Transport: tr}).Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := "http://alice:xxxxx@" + srv.host() + "/items?page=2"
	if fmt.Sprint(names) != fmt.Sprint([]string{want, want}) {
		t.Errorf("event names: got %q, want two of %q", names, want)
	}
}

func TestTransportBreakers(t *testing.T) {
	var made sync.Map
	var calls atomic.Int64
	tr, _ := newTransport(t, nil, transport.Options{OnBreaker: func(b *breaker.Breaker) {
		calls.Add(1)
		made.Store(b.Name(), b)
	}})
	var wg sync.WaitGroup
	got := make([]*breaker.Breaker, 16)
	for i := range got {
		i := i
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := tr.Breaker("api.example.com:443")
			if err != nil {
				t.Error(err)
			}
			got[i] = b
		}()
	}
	wg.Wait()
	for i, b := range got {
		if b != got[0] || b == nil {
			t.Fatalf("Breaker call %d: got %p, want the same breaker %p for every call", i, b, got[0])
		}
	}
	if calls.Load() != 1 {
		t.Errorf("OnBreaker calls: got %d, want 1", calls.Load())
	}
	if b, _ := made.Load("api.example.com:443"); b != got[0] {
		t.Errorf("OnBreaker got %v, want the breaker Breaker returns", b)
	}
	if _, err := tr.Breaker("bad{name}"); !errors.Is(err, breaker.ErrInvalidSettings) {
		t.Errorf("Breaker(bad{name}): got %v, want an error matching breaker.ErrInvalidSettings", err)
	}
	if calls.Load() != 1 {
		t.Errorf("OnBreaker calls after a bad name: got %d, want 1", calls.Load())
	}

	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := tr.Breaker("other"); !errors.Is(err, breaker.ErrClosed) {
		t.Errorf("Breaker after Close: got %v, want an error matching breaker.ErrClosed", err)
	}
	if _, err := got[0].Allow(context.Background()); !errors.Is(err, breaker.ErrClosed) {
		t.Errorf("the breaker after Close: got %v, want breaker.ErrClosed", err)
	}
}

func TestTransportBreakerName(t *testing.T) {
	a, b := newServer(t, status(503)), newServer(t, status(503))
	tr, _ := newTransport(t, nil, transport.Options{
		Settings:    breaker.Settings{ConsecutiveFailures: 3},
		Retry:       retry.Policy{MaxAttempts: 2},
		BreakerName: func(*http.Request) string { return "backend" },
	})
	client := &http.Client{Transport: tr}
	resp, err := client.Get(a.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The third failure, on the other host, trips the one shared breaker.
	_, err = client.Get(b.URL)
	if !errors.Is(err, breaker.ErrOpen) {
		t.Errorf("got %v, want an error matching breaker.ErrOpen", err)
	}
	if a.hits.Load() != 2 || b.hits.Load() != 1 {
		t.Errorf("requests the servers saw: got %d and %d, want 2 and 1", a.hits.Load(), b.hits.Load())
	}
}

func TestRoundTripAfterClose(t *testing.T) {
	srv := newServer(t, status(200))
	tr, rec := newTransport(t, nil, transport.Options{})
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tr.Close()
	for _, u := range []string{srv.URL, "http://another.example"} {
		req, _ := http.NewRequest("GET", u, nil)
		if _, err := tr.RoundTrip(req); !errors.Is(err, breaker.ErrClosed) {
			t.Errorf("%s after Close: got %v, want an error matching breaker.ErrClosed", u, err)
		}
	}
	if got := rec.attempts.Load(); got != 1 {
		t.Errorf("attempts: got %d, want 1 (none after Close)", got)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	st := newStore(t)
	tests := []struct {
		name  string
		opts  transport.Options
		field string
		also  error
	}{
		{"no store", transport.Options{}, "Store", nil},
		{"bad retry policy", transport.Options{Store: st, Retry: retry.Policy{MaxAttempts: -1}}, "Retry", retry.ErrInvalidPolicy},
		{"bad breaker settings", transport.Options{Store: st, Settings: breaker.Settings{OpenJitter: 2}}, "Settings", breaker.ErrInvalidSettings},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := transport.New(tt.opts)
			if err == nil {
				tr.Close()
				t.Fatal("got no error, want one")
			}
			if !errors.Is(err, transport.ErrInvalidOptions) || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("got %v, want an error matching ErrInvalidOptions naming %s", err, tt.field)
			}
			if tt.also != nil && !errors.Is(err, tt.also) {
				t.Errorf("got %v, want it to match %v too", err, tt.also)
			}
		})
	}
}

func TestDefaultCheckRetry(t *testing.T) {
	resp := func(code int) *http.Response { return &http.Response{StatusCode: code, Header: http.Header{}} }
	done, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		ctx  context.Context
		resp *http.Response
		err  error
		want bool
	}{
		{context.Background(), resp(429), nil, true},
		{context.Background(), resp(408), nil, true},
		{context.Background(), resp(502), nil, true},
		{context.Background(), resp(503), nil, true},
		{context.Background(), resp(504), nil, true},
		{context.Background(), resp(500), nil, false},
		{context.Background(), resp(501), nil, false},
		{context.Background(), resp(200), nil, false},
		{context.Background(), resp(404), nil, false},
		{context.Background(), nil, fmt.Errorf("dial: %w", syscall.ECONNREFUSED), true},
		{context.Background(), nil, fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{context.Background(), nil, context.DeadlineExceeded, true},
		{context.Background(), nil, retry.Permanent(errors.New("bad")), false},
		{done, resp(503), nil, false},
		{done, nil, syscall.ECONNRESET, false},
	}
	for _, tt := range tests {
		got, err := transport.DefaultCheckRetry(tt.ctx, tt.resp, tt.err)
		if got != tt.want || err != nil {
			code := 0
			if tt.resp != nil {
				code = tt.resp.StatusCode
			}
			t.Errorf("DefaultCheckRetry(status %d, %v) = %v, %v; want %v, nil", code, tt.err, got, err, tt.want)
		}
		// The one rule: retry.DefaultRetryable agrees on every status.
		if tt.resp != nil && tt.ctx.Err() == nil {
			if r := retry.DefaultRetryable(&retry.StatusError{StatusCode: tt.resp.StatusCode}); r != got {
				t.Errorf("status %d: retry.DefaultRetryable says %v, the transport %v", tt.resp.StatusCode, r, got)
			}
		}
	}
}

// TestTransportFleetOnRealRedis: two instances, each with its own client,
// store and transport. One trips the host's breaker; the other hears of it
// and sends the host nothing more.
func TestTransportFleetOnRealRedis(t *testing.T) {
	srv := redistest.Start(t)
	backend := newServer(t, status(503))
	settings := breaker.Settings{ConsecutiveFailures: 3, OpenDuration: time.Minute}
	instance := func(name string) (*transport.Transport, *recorder, chan breaker.Event) {
		st, err := store.New(srv.Client(t), store.Options{Prefix: "fleet"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		events := make(chan breaker.Event, 16)
		s := settings
		s.Instance = name
		tr, rec := newTransport(t, st, transport.Options{
			Settings: s,
			OnBreaker: func(b *breaker.Breaker) {
				b.Listen(func(e breaker.Event) { events <- e })
			},
		})
		return tr, rec, events
	}
	a, _, _ := instance("a")
	b, recB, eventsB := instance("b")
	if _, err := b.Breaker(backend.host()); err != nil {
		t.Fatal(err)
	}

	resp, err := (&http.Client{Transport: a}).Get(backend.URL)
	if err != nil {
		t.Fatalf("a: got %v, want the last 503 response", err)
	}
	resp.Body.Close()
	if got := backend.hits.Load(); got != 3 {
		t.Fatalf("requests the server saw from a: got %d, want 3", got)
	}

	select {
	case e := <-eventsB:
		if e.Kind != breaker.StateChanged || e.To != breaker.Open || e.Instance != "a" {
			t.Fatalf("b heard %+v, want a's transition to open", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b did not hear of the transition within 5s")
	}
	var took []time.Duration
	for i := 0; i < 11; i++ {
		began := time.Now()
		_, err = (&http.Client{Transport: b}).Get(backend.URL)
		took = append(took, time.Since(began))
		if !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("b: got %v, want an error matching breaker.ErrOpen", err)
		}
	}
	if got := recB.attempts.Load(); got != 0 {
		t.Errorf("b's attempts: got %d, want 0", got)
	}
	checkFast(t, took)
	if got := backend.hits.Load(); got != 3 {
		t.Errorf("requests the server saw: got %d, want still 3", got)
	}
}

type idleCloser struct {
	http.RoundTripper
	closed atomic.Int64
}

func (c *idleCloser) CloseIdleConnections() { c.closed.Add(1) }

func TestCloseIdleConnections(t *testing.T) {
	base := &idleCloser{RoundTripper: http.DefaultTransport}
	tr, err := transport.New(transport.Options{Store: newStore(t), Base: base})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	(&http.Client{Transport: tr}).CloseIdleConnections()
	if got := base.closed.Load(); got != 1 {
		t.Errorf("base CloseIdleConnections calls: got %d, want 1", got)
	}
}

// http.Client cancels requests to other RoundTrippers through the
// deprecated Request.Cancel; retrying stops when it closes.
func TestRoundTripStopsWhenRequestCancelCloses(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	srv := newServer(t, status(503))
	tr, rec := newTransport(t, nil, transport.Options{Retry: retry.Policy{Clock: clock}})
	req, _ := http.NewRequest("GET", srv.URL, nil)
	cancel := make(chan struct{})
	req.Cancel = cancel //lint:ignore SA1019 http.Client still cancels through it
	done := make(chan error, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if resp != nil {
			resp.Body.Close()
		}
		done <- err
	}()
	clock.BlockUntil(1) // waiting to retry
	close(cancel)
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want an error matching context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RoundTrip did not return within 10s of Request.Cancel closing")
	}
	if got := rec.attempts.Load(); got != 1 {
		t.Errorf("attempts: got %d, want 1", got)
	}
}

// readWaiter closes first once a breaker has read its state.
type readWaiter struct {
	breaker.NopObserver
	once  sync.Once
	first chan struct{}
}

func (r *readWaiter) StoreCalled(c breaker.StoreCall) {
	if c.Op == "read" && c.Err == nil {
		r.once.Do(func() { close(r.first) })
	}
}

// A request that no server could be sent (a CR LF in a header, say) is the
// caller's bug, not the host's: it fails at once with ErrInvalidRequest,
// makes no attempt and counts nothing, so it cannot open the host's breaker
// for the fleet.
func TestRoundTripRefusesAnInvalidRequest(t *testing.T) {
	srv := newServer(t, status(200))
	tr, rec := newTransport(t, nil, transport.Options{Settings: breaker.Settings{ConsecutiveFailures: 2}})
	bad := map[string]func(r *http.Request){
		"CR LF in a header value": func(r *http.Request) { r.Header.Set("X-Token", "abc\r\ndef") },
		"space in a header name":  func(r *http.Request) { r.Header["Bad Name"] = []string{"x"} },
		"space in the method":     func(r *http.Request) { r.Method = "GET ME" },
		"NUL in a trailer":        func(r *http.Request) { r.Trailer = http.Header{"X-Sum": {"a\x00"}} },
	}
	for name, spoil := range bad {
		for i := 0; i < 3; i++ {
			req, _ := http.NewRequest("GET", srv.URL, nil)
			spoil(req)
			resp, err := tr.RoundTrip(req)
			if resp != nil || !errors.Is(err, transport.ErrInvalidRequest) {
				t.Fatalf("%s: RoundTrip = %v, %v; want no response and an error matching ErrInvalidRequest", name, resp, err)
			}
		}
	}
	if n := rec.attempts.Load(); n != 0 || srv.hits.Load() != 0 {
		t.Errorf("%d attempts, %d requests at the server; want none", n, srv.hits.Load())
	}
	onlyTheValidOneCounts(t, tr, srv, "the invalid ones")
}

// An error that an *http.Transport returns before it asks for a connection
// (here an unsupported scheme) says nothing of the host: it is neither
// counted nor retried.
func TestRoundTripCountsNothingThatNeverLeft(t *testing.T) {
	srv := newServer(t, status(200))
	var attempts atomic.Int64
	tr := plainTransport(t, transport.Options{
		Settings: breaker.Settings{ConsecutiveFailures: 2},
		Retry: retry.Policy{MaxAttempts: 3, BaseDelay: 100 * time.Microsecond, OnEvent: func(retry.Event) {
			attempts.Add(1)
		}},
	})
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest("GET", "ftp://"+srv.host()+"/", nil)
		if _, err := tr.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "unsupported protocol scheme") {
			t.Fatalf("ftp request: %v, want net/http's unsupported protocol scheme", err)
		}
	}
	if n := attempts.Load(); n != 3 {
		t.Errorf("%d attempts for 3 requests, want 3 (no retry)", n)
	}
	onlyTheValidOneCounts(t, tr, srv, "the ftp ones")
}

// onlyTheValidOneCounts sends a valid GET to srv through tr, after what
// went before, and checks that the host's breaker counted its success
// alone.
func onlyTheValidOneCounts(t *testing.T, tr *transport.Transport, srv *server, before string) {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("a valid request after %s: %v", before, err)
	}
	resp.Body.Close()
	if c := counts(t, tr, srv.host()); c.Failures != 0 || c.Successes != 1 {
		t.Errorf("counts = %+v, want the valid request's success alone", c)
	}
}

// A 101 Switching Protocols response's body is the connection, writable, as
// net/http promises, with AttemptTimeout too.
func TestRoundTripKeepsAnUpgradedBodyWritable(t *testing.T) {
	srv := newServer(t, func(_ int64, w http.ResponseWriter, _ *http.Request) {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo: " + line)
		brw.Flush()
	})
	for _, d := range []time.Duration{0, time.Minute} {
		tr := plainTransport(t, transport.Options{AttemptTimeout: d})
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "echo")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		rw, ok := resp.Body.(io.ReadWriteCloser)
		if resp.StatusCode != http.StatusSwitchingProtocols || !ok {
			t.Fatalf("AttemptTimeout %v: status %d, body %T; want 101 and an io.ReadWriteCloser", d, resp.StatusCode, resp.Body)
		}
		if _, err := rw.Write([]byte("hello\n")); err != nil {
			t.Fatal(err)
		}
		if line, _ := bufio.NewReader(rw).ReadString('\n'); line != "echo: hello\n" {
			t.Errorf("AttemptTimeout %v: read %q through the upgraded body, want the echo", d, line)
		}
		rw.Close()
	}
}

// plainTransport makes a transport with opts on a fresh store, whose Base is
// an *http.Transport of its own.
func plainTransport(t *testing.T, opts transport.Options) *transport.Transport {
	t.Helper()
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	opts.Store, opts.Base = newStore(t), base
	tr, err := transport.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}
