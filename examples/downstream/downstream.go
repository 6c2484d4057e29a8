package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// probeHeader marks a request sent under a half-open probe lease.
const probeHeader = "X-Breakwater-Probe"

// config is the downstream's configuration, from the environment.
type config struct {
	addr    string
	status  int           // status of a failed answer
	delay   time.Duration // how long a failed answer takes
	failing bool          // fail from the start
}

// configFromEnv reads the configuration through getenv (os.Getenv).
func configFromEnv(getenv func(string) string) (config, error) {
	cfg := config{addr: ":8080", status: http.StatusServiceUnavailable}
	if v := getenv("ADDR"); v != "" {
		cfg.addr = v
	}
	if v := getenv("FAIL_STATUS"); v != "" {
		s, err := parseStatus(v)
		if err != nil {
			return config{}, fmt.Errorf("downstream: FAIL_STATUS: %w", err)
		}
		cfg.status = s
	}
	if v := getenv("FAIL_DELAY"); v != "" {
		d, err := parseDelay(v)
		if err != nil {
			return config{}, fmt.Errorf("downstream: FAIL_DELAY: %w", err)
		}
		cfg.delay = d
	}
	switch v := getenv("FAILING"); v {
	case "", "0", "false":
	case "1", "true":
		cfg.failing = true
	default:
		return config{}, fmt.Errorf("downstream: FAILING=%q, want 1 or 0", v)
	}
	return cfg, nil
}

// parseStatus parses a failure status: 400 to 599.
func parseStatus(v string) (int, error) {
	s, err := strconv.Atoi(v)
	if err != nil || s < 400 || s > 599 {
		return 0, fmt.Errorf("%q is no failure status, want 400 to 599", v)
	}
	return s, nil
}

// parseDelay parses a failure delay: a Go duration from 0 to a minute.
func parseDelay(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > time.Minute {
		return 0, fmt.Errorf("%q is no delay, want a Go duration from 0 to 1m such as 200ms", v)
	}
	return d, nil
}

// stats are the downstream's counts, as GET /stats returns them.
type stats struct {
	// Failing is whether the downstream fails now.
	Failing bool `json:"failing"`
	// Requests is how many API requests arrived; Failures and Successes how
	// many were answered with the failure status and with 200.
	Requests  int64 `json:"requests"`
	Failures  int64 `json:"failures"`
	Successes int64 `json:"successes"`
	// Probes is how many requests carried "X-Breakwater-Probe: 1", and
	// ProbeFailures how many of those were failed.
	Probes        int64 `json:"probes"`
	ProbeFailures int64 `json:"probe_failures"`
	// InFlight is how many requests are being answered now; MaxInFlight the
	// most at once, and MaxProbesInFlight the most probes at once, since the
	// start or the last reset.
	InFlight          int64 `json:"in_flight"`
	MaxInFlight       int64 `json:"max_in_flight"`
	MaxProbesInFlight int64 `json:"max_probes_in_flight"`
}

// String describes the counts in one line.
func (s stats) String() string {
	return fmt.Sprintf("failing=%v requests=%d failures=%d successes=%d probes=%d probe_failures=%d max_in_flight=%d max_probes_in_flight=%d",
		s.Failing, s.Requests, s.Failures, s.Successes, s.Probes, s.ProbeFailures, s.MaxInFlight, s.MaxProbesInFlight)
}

// downstream is the flaky dependency: an http.Handler for the API and the
// control endpoints.
type downstream struct {
	mux *http.ServeMux

	mu             sync.Mutex
	failing        bool
	status         int
	delay          time.Duration
	s              stats
	probesInFlight int64
}

func newDownstream(cfg config) *downstream {
	d := &downstream{failing: cfg.failing, status: cfg.status, delay: cfg.delay}
	d.mux = http.NewServeMux()
	d.mux.HandleFunc("/fail", d.fail)
	d.mux.HandleFunc("/heal", d.heal)
	d.mux.HandleFunc("/stats", d.getStats)
	d.mux.HandleFunc("/reset", d.reset)
	d.mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	d.mux.HandleFunc("/", d.api)
	return d
}

func (d *downstream) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.mux.ServeHTTP(w, r) }

// api answers a request to the dependency.
func (d *downstream) api(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	probe := r.Header.Get(probeHeader) == "1"
	d.mu.Lock()
	failing, status, delay := d.failing, d.status, d.delay
	d.s.Requests++
	d.s.InFlight++
	d.s.MaxInFlight = max(d.s.MaxInFlight, d.s.InFlight)
	if probe {
		d.s.Probes++
		d.probesInFlight++
		d.s.MaxProbesInFlight = max(d.s.MaxProbesInFlight, d.probesInFlight)
	}
	d.mu.Unlock()

	if failing && delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}

	d.mu.Lock()
	d.s.InFlight--
	if probe {
		d.probesInFlight--
	}
	if failing {
		d.s.Failures++
		if probe {
			d.s.ProbeFailures++
		}
	} else {
		d.s.Successes++
	}
	d.mu.Unlock()

	if failing {
		http.Error(w, http.StatusText(status), status)
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// fail switches the failure on: POST /fail[?status=503&delay=200ms].
func (d *downstream) fail(w http.ResponseWriter, r *http.Request) {
	if !post(w, r) {
		return
	}
	status, delay := -1, time.Duration(-1)
	if v := r.URL.Query().Get("status"); v != "" {
		s, err := parseStatus(v)
		if err != nil {
			http.Error(w, "downstream: status: "+err.Error(), http.StatusBadRequest)
			return
		}
		status = s
	}
	if v := r.URL.Query().Get("delay"); v != "" {
		dl, err := parseDelay(v)
		if err != nil {
			http.Error(w, "downstream: delay: "+err.Error(), http.StatusBadRequest)
			return
		}
		delay = dl
	}
	d.mu.Lock()
	d.failing = true
	if status >= 0 {
		d.status = status
	}
	if delay >= 0 {
		d.delay = delay
	}
	status, delay = d.status, d.delay
	d.mu.Unlock()
	logf("failing: status %d after %v", status, delay)
	d.getStats(w, r)
}

// heal switches the failure off: POST /heal.
func (d *downstream) heal(w http.ResponseWriter, r *http.Request) {
	if !post(w, r) {
		return
	}
	d.mu.Lock()
	d.failing = false
	d.mu.Unlock()
	logf("healed")
	d.getStats(w, r)
}

// reset zeroes the counts: POST /reset.
func (d *downstream) reset(w http.ResponseWriter, r *http.Request) {
	if !post(w, r) {
		return
	}
	d.mu.Lock()
	inFlight := d.s.InFlight
	d.s = stats{InFlight: inFlight, MaxInFlight: inFlight, MaxProbesInFlight: d.probesInFlight}
	d.mu.Unlock()
	logf("counts reset")
	d.getStats(w, r)
}

// getStats writes the counts as JSON: GET /stats.
func (d *downstream) getStats(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(d.stats())
}

// stats returns the counts now.
func (d *downstream) stats() stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.s
	s.Failing = d.failing
	return s
}

// post answers 405 to anything but POST and reports whether r is a POST.
func post(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodPost {
		return true
	}
	w.Header().Set("Allow", http.MethodPost)
	http.Error(w, "downstream: use POST", http.StatusMethodNotAllowed)
	return false
}
