package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestConfigFromEnv(t *testing.T) {
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	got, err := configFromEnv(env(nil))
	if err != nil {
		t.Fatalf("configFromEnv(empty) = %v", err)
	}
	if want := (config{addr: ":8080", status: 503}); got != want {
		t.Errorf("configFromEnv(empty) = %+v, want %+v", got, want)
	}
	got, err = configFromEnv(env(map[string]string{"ADDR": ":9", "FAIL_STATUS": "500", "FAIL_DELAY": "20ms", "FAILING": "1"}))
	if err != nil {
		t.Fatalf("configFromEnv = %v", err)
	}
	if want := (config{addr: ":9", status: 500, delay: 20 * time.Millisecond, failing: true}); got != want {
		t.Errorf("configFromEnv = %+v, want %+v", got, want)
	}
	for _, kv := range []map[string]string{
		{"FAIL_STATUS": "200"},
		{"FAIL_STATUS": "x"},
		{"FAIL_DELAY": "-1s"},
		{"FAIL_DELAY": "2h"},
		{"FAILING": "yes"},
	} {
		if _, err := configFromEnv(env(kv)); err == nil || !strings.HasPrefix(err.Error(), "downstream: ") {
			t.Errorf("configFromEnv(%v) = %v, want a downstream: error", kv, err)
		}
	}
}

// client drives a downstream served by httptest.
type client struct {
	t   *testing.T
	url string
}

func start(t *testing.T, cfg config) *client {
	t.Helper()
	srv := httptest.NewServer(newDownstream(cfg))
	t.Cleanup(srv.Close)
	return &client{t: t, url: srv.URL}
}

// do sends a request and returns the status.
func (c *client) do(method, path string, probe bool) int {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if probe {
		req.Header.Set(probeHeader, "1")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (c *client) stats() stats {
	c.t.Helper()
	resp, err := http.Get(c.url + "/stats")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var s stats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		c.t.Fatalf("GET /stats: %v", err)
	}
	return s
}

func TestFailHealCount(t *testing.T) {
	c := start(t, config{status: 503})
	if got := c.do("GET", "/api", false); got != 200 {
		t.Errorf("healthy: got %d, want 200", got)
	}
	if got := c.do("POST", "/fail?status=502", false); got != 200 {
		t.Fatalf("POST /fail: got %d, want 200", got)
	}
	if got := c.do("GET", "/api", false); got != 502 {
		t.Errorf("failing: got %d, want 502", got)
	}
	if got := c.do("GET", "/", true); got != 502 {
		t.Errorf("failing probe: got %d, want 502", got)
	}
	if got := c.do("POST", "/heal", false); got != 200 {
		t.Fatalf("POST /heal: got %d, want 200", got)
	}
	if got := c.do("GET", "/api", true); got != 200 {
		t.Errorf("healed probe: got %d, want 200", got)
	}
	c.do("GET", "/healthz", false) // not counted
	want := stats{Requests: 4, Failures: 2, Successes: 2, Probes: 2, ProbeFailures: 1, MaxInFlight: 1, MaxProbesInFlight: 1}
	if got := c.stats(); got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
	if got := c.do("POST", "/reset", false); got != 200 {
		t.Fatalf("POST /reset: got %d, want 200", got)
	}
	if got := c.stats(); got != (stats{}) {
		t.Errorf("stats after reset = %+v, want zero", got)
	}
}

func TestControlNeedsPOST(t *testing.T) {
	c := start(t, config{status: 503})
	for _, p := range []string{"/fail", "/heal", "/reset"} {
		if got := c.do("GET", p, false); got != http.StatusMethodNotAllowed {
			t.Errorf("GET %s: got %d, want 405", p, got)
		}
	}
	for _, q := range []string{"/fail?status=99", "/fail?delay=soon"} {
		if got := c.do("POST", q, false); got != http.StatusBadRequest {
			t.Errorf("POST %s: got %d, want 400", q, got)
		}
	}
	if s := c.stats(); s.Failing {
		t.Errorf("a rejected POST /fail switched the failure on")
	}
}

// TestInFlight holds failing requests open with a delay and checks the
// most-at-once counts.
func TestInFlight(t *testing.T) {
	c := start(t, config{status: 503, delay: 100 * time.Millisecond, failing: true})
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", c.url+"/api", nil)
			req.Header.Set(probeHeader, "1")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	s := c.stats()
	// The three overlap unless the machine is too slow to start them within
	// 100ms of each other; at least one is always in flight.
	if s.MaxInFlight < 1 || s.MaxInFlight > 3 || s.MaxProbesInFlight != s.MaxInFlight {
		t.Errorf("max in flight %d, probes %d; want 1 to 3, equal", s.MaxInFlight, s.MaxProbesInFlight)
	}
	if s.InFlight != 0 || s.Failures != 3 || s.ProbeFailures != 3 {
		t.Errorf("stats = %+v, want 3 failed probes, none in flight", s)
	}
}
