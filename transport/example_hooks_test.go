package transport_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/retry"
	"github.com/breakwater-go/breakwater/store"
	"github.com/breakwater-go/breakwater/transport"
)

// exampleStore returns a store on an embedded Redis and a function that
// closes both.
func exampleStore() (*store.Store, func()) {
	m, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	st, err := store.New(rdb, store.Options{Prefix: "example"})
	if err != nil {
		panic(err)
	}
	return st, func() {
		st.Close()
		rdb.Close()
		m.Close()
	}
}

// CheckRetry sees each attempt's response: here a job API answers 200 with
// "X-Job: pending" until the job is done, and the transport asks again.
// PrepareRetry marks each retry's request.
func Example_checkRetry() {
	st, stop := exampleStore()
	defer stop()

	var calls atomic.Int32
	jobs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		fmt.Printf("server: attempt %d, X-Retry %q\n", n, r.Header.Get("X-Retry"))
		if n < 3 {
			w.Header().Set("X-Job", "pending")
			return
		}
		fmt.Fprint(w, "done")
	}))
	defer jobs.Close()

	retries := 0
	tr, err := transport.New(transport.Options{
		Store: st,
		Retry: retry.Policy{MaxAttempts: 5, BaseDelay: time.Millisecond},
		CheckRetry: func(ctx context.Context, resp *http.Response, err error) (bool, error) {
			if err == nil && resp.Header.Get("X-Job") == "pending" {
				return true, nil // ask again, after the policy's backoff
			}
			return transport.DefaultCheckRetry(ctx, resp, err)
		},
		PrepareRetry: func(req *http.Request) error {
			retries++
			req.Header.Set("X-Retry", strconv.Itoa(retries))
			return nil
		},
	})
	if err != nil {
		panic(err)
	}
	defer tr.Close()

	resp, err := (&http.Client{Transport: tr}).Get(jobs.URL + "/jobs/7")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))
	// Output:
	// server: attempt 1, X-Retry ""
	// server: attempt 2, X-Retry "1"
	// server: attempt 3, X-Retry "2"
	// 200 done
}

// SettingsFor gives one host a breaker of its own kind; MaxBreakers and
// IdleTimeout bound how many per-host breakers stay in memory.
func Example_settingsFor() {
	st, stop := exampleStore()
	defer stop()

	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer flaky.Close()
	flakyHost := flaky.Listener.Addr().String()

	tr, err := transport.New(transport.Options{
		Store:    st,
		Settings: breaker.Settings{ConsecutiveFailures: 10, OpenDuration: 30 * time.Second},
		SettingsFor: func(host string, shared breaker.Settings) breaker.Settings {
			if host == flakyHost {
				shared.ConsecutiveFailures = 2 // give up on this one sooner
			}
			return shared
		},
		MaxBreakers: 500,
		IdleTimeout: 10 * time.Minute,
		Retry:       retry.Policy{MaxAttempts: 1},
	})
	if err != nil {
		panic(err)
	}
	defer tr.Close()

	client := &http.Client{Transport: tr}
	for i := 1; i <= 3; i++ {
		resp, err := client.Get(flaky.URL)
		if err != nil {
			fmt.Printf("request %d: breaker open: %v\n", i, err != nil)
			continue
		}
		resp.Body.Close()
		fmt.Printf("request %d: %d\n", i, resp.StatusCode)
	}
	// Output:
	// request 1: 503
	// request 2: 503
	// request 3: breaker open: true
}

// A Retry-After that the request's deadline cannot wait for is not slept:
// the response comes back at once, and the caller decides. A 429 is
// retried, but does not count against the host's breaker.
func Example_retryAfter() {
	st, stop := exampleStore()
	defer stop()

	limited := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		http.Error(w, "slow down", http.StatusTooManyRequests)
	}))
	defer limited.Close()

	tr, err := transport.New(transport.Options{Store: st, Retry: retry.Policy{MaxAttempts: 3, MaxDelay: time.Minute}})
	if err != nil {
		panic(err)
	}
	defer tr.Close()

	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	began := time.Now()
	resp, err := client.Get(limited.URL)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	b, _ := tr.Breaker(limited.Listener.Addr().String())
	fmt.Println(resp.StatusCode, resp.Header.Get("Retry-After"), time.Since(began) < time.Second, b.State())
	// Output:
	// 429 30 true closed
}

// The transport logs to a *slog.Logger when given one, and is silent
// otherwise.
func Example_logger() {
	st, stop := exampleStore()
	defer stop()

	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer down.Close()

	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "url" {
				return slog.Attr{} // left out to keep the output stable
			}
			return a
		},
	}))
	tr, err := transport.New(transport.Options{
		Store:  st,
		Logger: logger,
		Retry:  retry.Policy{MaxAttempts: 2, BaseDelay: time.Millisecond, Jitter: retry.JitterNone},
	})
	if err != nil {
		panic(err)
	}
	defer tr.Close()
	resp, err := (&http.Client{Transport: tr}).Get(down.URL)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	// Output:
	// level=INFO msg="breakwater: retrying request" attempt=1 max_attempts=2 kind=other backoff=1ms error="retry: HTTP 502 Bad Gateway"
	// level=WARN msg="breakwater: request failed" method=GET attempts=2 status=502
}
