package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
)

// TestScrape makes calls through the example's breaker and scrapes /metrics
// as Prometheus would.
func TestScrape(t *testing.T) {
	m := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer client.Close()
	a, err := newApp(client)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	srv := httptest.NewServer(a.handler)
	defer srv.Close()

	// Before any call: the state gauge is there, closed.
	body := scrape(t, srv.URL)
	want(t, body, `breakwater_circuitbreaker_state{breakwater_circuitbreaker_name="inventory",breakwater_circuitbreaker_state="closed",otel_scope_name="github.com/breakwater-go/breakwater/otel"`, " 1")

	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := a.call(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}
	// Failures trip the breaker (5 in a row); retries stop at the open gate.
	for i := 0; i < 3; i++ {
		_ = a.call(ctx, 1)
	}
	if err := a.call(ctx, 0); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("after the failures: got %v, want the open breaker's refusal", err)
	}
	// A call without the retry policy: the breaker rejects it.
	if _, err := breaker.Execute(ctx, a.breaker, func(context.Context) (int, error) { return 0, nil }); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("Execute while open: got %v, want ErrOpen", err)
	}

	body = scrape(t, srv.URL)
	want(t, body, `breakwater_circuitbreaker_calls_total{breakwater_circuitbreaker_name="inventory",breakwater_circuitbreaker_outcome="success",breakwater_circuitbreaker_slow="false"`, " 3")
	want(t, body, `breakwater_circuitbreaker_calls_total{breakwater_circuitbreaker_name="inventory",breakwater_circuitbreaker_outcome="failure",breakwater_circuitbreaker_slow="false"`, " 5")
	want(t, body, `breakwater_circuitbreaker_state{breakwater_circuitbreaker_name="inventory",breakwater_circuitbreaker_state="open"`, " 1")
	want(t, body, `breakwater_circuitbreaker_transitions_total{breakwater_circuitbreaker_decider="shared",breakwater_circuitbreaker_from_state="closed",breakwater_circuitbreaker_name="inventory",breakwater_circuitbreaker_reason="consecutive_failures",breakwater_circuitbreaker_to_state="open"`, " 1")
	want(t, body, `breakwater_retry_attempts_total{breakwater_retry_attempt="1",breakwater_retry_name="inventory",breakwater_retry_outcome="success",breakwater_retry_will_retry="false"`, " 3")
	want(t, body, `breakwater_circuitbreaker_call_duration_seconds_count{breakwater_circuitbreaker_name="inventory",breakwater_circuitbreaker_outcome="failure"`, " 5")
	// The 8 outcomes reached the store in batches: each failure at once (the
	// first one with the successes not sent yet), so 5 to 8 record calls, and
	// a few more to look again once failures have settled.
	want(t, body, `breakwater_circuitbreaker_batch_outcomes_total{breakwater_circuitbreaker_name="inventory"`, " 8")
	if !regexp.MustCompile(`(?m)^breakwater_store_call_duration_seconds_count\{breakwater_circuitbreaker_name="inventory",breakwater_store_operation="record".*\} ([5-9]|1[0-9])$`).MatchString(body) {
		t.Errorf("not 5 to 19 record calls in /metrics:\n%s", grep(body))
	}
	// Rejected: by the retry policy's gate, and the one Execute.
	if !regexp.MustCompile(`(?m)^breakwater_circuitbreaker_rejections_total\{breakwater_circuitbreaker_name="inventory",breakwater_circuitbreaker_reason="open".*\} ([2-9]|\d\d+)$`).MatchString(body) {
		t.Errorf("fewer than 2 open rejections in /metrics:\n%s", grep(body))
	}
	// The retry policy asked the breaker first and did not call.
	if !regexp.MustCompile(`(?m)^breakwater_retry_attempts_total\{breakwater_retry_attempt="1",breakwater_retry_name="inventory",breakwater_retry_outcome="gate_refused".*\} [1-9]`).MatchString(body) {
		t.Errorf("no gate refusals in /metrics:\n%s", grep(body))
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// want checks that a series starting with prefix has the value suffix.
func want(t *testing.T, body, prefix, value string) {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix) {
			if !strings.HasSuffix(line, value) {
				t.Errorf("got %s, want value%s", line, value)
			}
			return
		}
	}
	t.Errorf("no series %s in /metrics:\n%s", prefix, grep(body))
}

func grep(body string) string {
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "breakwater_") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
