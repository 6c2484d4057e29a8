package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

func envOf(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestConfigFromEnv(t *testing.T) {
	host := func() (string, error) { return "pod-7", nil }
	cfg, err := configFromEnv(envOf(map[string]string{"DOWNSTREAM_URL": "http://downstream:8080/api"}), host)
	if err != nil {
		t.Fatalf("configFromEnv(defaults) = %v", err)
	}
	if cfg.Instance != "pod-7" || cfg.Breaker.Instance != "pod-7" {
		t.Errorf("instance %q (breaker %q), want the host name pod-7", cfg.Instance, cfg.Breaker.Instance)
	}
	if cfg.Prefix != "breakwater-service" || cfg.Store.Prefix != cfg.Prefix {
		t.Errorf("prefix %q (store %q), want breakwater-service", cfg.Prefix, cfg.Store.Prefix)
	}
	if cfg.redis.Addr != "localhost:6379" || cfg.Interval != 0 || cfg.Attempts != 1 || cfg.Breaker.ConsecutiveFailures != 5 {
		t.Errorf("defaults: redis %q, interval %v, attempts %d, failures %d", cfg.redis.Addr, cfg.Interval, cfg.Attempts, cfg.Breaker.ConsecutiveFailures)
	}

	cfg, err = configFromEnv(envOf(map[string]string{
		"DOWNSTREAM_URL":     "https://api.example.com/v1",
		"REDIS_URL":          "rediss://user:secret@redis.example.com:6380/2",
		"INSTANCE":           "svc-1",
		"STORE_PREFIX":       "checkout",
		"LOAD_INTERVAL":      "100ms",
		"LOAD_WORKERS":       "3",
		"BREAKER_FAILURES":   "3",
		"BREAKER_OPEN":       "2s",
		"BREAKER_MAX_PROBES": "2",
		"BREAKER_FALLBACK":   "closed",
	}), host)
	if err != nil {
		t.Fatalf("configFromEnv = %v", err)
	}
	if cfg.redis.TLSConfig == nil || cfg.redis.Addr != "redis.example.com:6380" || cfg.redis.DB != 2 || cfg.redis.Password != "secret" {
		t.Errorf("rediss:// URL: TLS %v, addr %q, db %d", cfg.redis.TLSConfig != nil, cfg.redis.Addr, cfg.redis.DB)
	}
	if cfg.Instance != "svc-1" || cfg.Prefix != "checkout" || cfg.Interval != 100*time.Millisecond || cfg.Workers != 3 ||
		cfg.Breaker.ConsecutiveFailures != 3 || cfg.Breaker.OpenDuration != 2*time.Second || cfg.Breaker.MaxProbes != 2 {
		t.Errorf("configFromEnv = %+v", cfg)
	}

	bad := []map[string]string{
		{},                                    // no DOWNSTREAM_URL
		{"DOWNSTREAM_URL": "downstream:8080"}, // no scheme
		{"DOWNSTREAM_URL": "ftp://x/"},
		{"DOWNSTREAM_URL": "http://d/", "REDIS_URL": "http://redis:6379"},
		{"DOWNSTREAM_URL": "http://d/", "LOAD_INTERVAL": "often"},
		{"DOWNSTREAM_URL": "http://d/", "LOAD_WORKERS": "0"},
		{"DOWNSTREAM_URL": "http://d/", "BREAKER_FAILURES": "-1"},
		{"DOWNSTREAM_URL": "http://d/", "BREAKER_FALLBACK": "maybe"},
		{"DOWNSTREAM_URL": "http://d/", "STORE_PREFIX": "a{b}"},
	}
	for _, kv := range bad {
		_, err := configFromEnv(envOf(kv), host)
		if err == nil || !strings.HasPrefix(err.Error(), "service: ") {
			t.Errorf("configFromEnv(%v) = %v, want a service: error", kv, err)
		}
	}
	if _, err := configFromEnv(envOf(map[string]string{"DOWNSTREAM_URL": "http://d/"}), func() (string, error) { return "", errors.New("no name") }); err == nil {
		t.Errorf("configFromEnv without INSTANCE or host name = nil, want an error")
	}
	_, err = configFromEnv(envOf(map[string]string{"DOWNSTREAM_URL": "http://d/", "REDIS_URL": "redis://u:hunter2@h:1/x"}), host)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad REDIS_URL: %v, want an error without the password", err)
	}
}

// flaky is a downstream whose failure the test switches; it counts what
// reaches it.
type flaky struct {
	failing  atomic.Bool
	requests atomic.Int64
	probes   atomic.Int64
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	if r.Header.Get(probeHeader) == "1" {
		f.probes.Add(1)
	}
	if f.failing.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// instance is a running service.
type instance struct {
	t    *testing.T
	name string
	url  string
	out  *syncBuffer
	stop func() // ends run and waits for it
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startInstance(t *testing.T, name string, env map[string]string) *instance {
	t.Helper()
	kv := map[string]string{"ADDR": "127.0.0.1:0", "INSTANCE": name}
	for k, v := range env {
		kv[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, envOf(kv), out, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-errc:
		cancel()
		t.Fatalf("%s: run = %v", name, err)
	}
	in := &instance{t: t, name: name, url: "http://" + addr, out: out}
	var once sync.Once
	in.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("%s: run = %v", name, err)
			}
		})
	}
	t.Cleanup(in.stop)
	return in
}

func (in *instance) get(path string, v any) int {
	in.t.Helper()
	resp, err := http.Get(in.url + path)
	if err != nil {
		in.t.Fatalf("%s: GET %s: %v", in.name, path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		in.t.Fatalf("%s: GET %s: %v", in.name, path, err)
	}
	return resp.StatusCode
}

func (in *instance) work() (int, result) {
	in.t.Helper()
	var r result
	code := in.get("/work", &r)
	return code, r
}

func (in *instance) status() status {
	in.t.Helper()
	var s status
	in.get("/status", &s)
	return s
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		<-tick.C
	}
}

// final parses the "final {...}" line an instance logs when it stops.
func final(t *testing.T, in *instance) status {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(in.out.String()))
	for sc.Scan() {
		if _, js, ok := strings.Cut(sc.Text(), ": final "); ok {
			var s status
			if err := json.Unmarshal([]byte(js), &s); err != nil {
				t.Fatalf("%s: final line %q: %v", in.name, js, err)
			}
			return s
		}
	}
	t.Fatalf("%s: no final line in its log:\n%s", in.name, in.out.String())
	return status{}
}

// TestTwoInstancesShareOneBreaker runs two instances against one Redis
// (miniredis) and one flaky downstream: failures on one open the breaker
// for both, the downstream sees the threshold and no more, one probe
// closes it for both, and the logs and final counts say so.
func TestTwoInstancesShareOneBreaker(t *testing.T) {
	mr := miniredis.RunT(t)
	down := &flaky{}
	ds := httptest.NewServer(down)
	t.Cleanup(ds.Close)
	env := map[string]string{
		"REDIS_URL":        "redis://" + mr.Addr() + "/0",
		"DOWNSTREAM_URL":   ds.URL + "/api",
		"STORE_PREFIX":     "svc-test",
		"BREAKER_FAILURES": "3",
		"BREAKER_OPEN":     "200ms",
		// not a test of timeouts: a loaded machine may pause a call longer
		// than the default 250ms, and the instances would then decide locally
		"STORE_TIMEOUT": "10s",
	}
	a, b := startInstance(t, "a", env), startInstance(t, "b", env)

	if code, r := a.work(); code != http.StatusOK || r.Outcome != "succeeded" {
		t.Fatalf("a: healthy /work = %d %+v, want 200 succeeded", code, r)
	}
	down.failing.Store(true)
	for i := 0; i < 3; i++ {
		if code, r := a.work(); code != http.StatusBadGateway || r.Outcome != "failed" {
			t.Fatalf("a: failing /work #%d = %d %+v, want 502 failed", i+1, code, r)
		}
	}
	if code, r := a.work(); code != http.StatusServiceUnavailable || r.Outcome != "rejected" {
		t.Fatalf("a: /work after the trip = %d %+v, want 503 rejected", code, r)
	}
	eventually(t, 5*time.Second, "b never saw the breaker open", func() bool { return b.status().State == "open" })
	if code, r := b.work(); code != http.StatusServiceUnavailable || r.Outcome != "rejected" || r.NextProbeInMS <= 0 {
		t.Fatalf("b: /work = %d %+v, want 503 rejected with a next probe", code, r)
	}
	if got := down.requests.Load(); got != 4 {
		t.Errorf("downstream got %d requests, want 4 (1 success, 3 failures)", got)
	}
	st := b.status()
	if st.Shared == nil || st.Shared.State != "open" || st.Shared.Counts.Trips != 1 || st.Shared.ChangedBy != "a" {
		t.Errorf("b: shared state %+v (error %q), want open, 1 trip, by a", st.Shared, st.SharedError)
	}

	down.failing.Store(false)
	eventually(t, 5*time.Second, "no probe closed the breaker", func() bool {
		_, r := b.work()
		return r.Outcome == "succeeded"
	})
	eventually(t, 5*time.Second, "a never saw the breaker close", func() bool { return a.status().State == "closed" })
	if got := down.probes.Load(); got != 1 {
		t.Errorf("downstream saw %d probes, want 1", got)
	}

	a.stop()
	b.stop()
	fa, fb := final(t, a), final(t, b)
	if want := (callsJSON{Made: 5, Rejected: 1, Admitted: 4, Succeeded: 1, Failed: 3}); fa.Calls != want {
		t.Errorf("a: final calls %+v, want %+v", fa.Calls, want)
	}
	if fb.Calls.Probes != 1 || fb.Calls.Succeeded != 1 || fb.Calls.Failed != 0 || fb.Calls.Admitted != 1 {
		t.Errorf("b: final calls %+v, want one successful probe", fb.Calls)
	}
	for _, in := range []*instance{a, b} {
		log := in.out.String()
		for _, want := range []string{"closed -> open (consecutive_failures) by a", "half-open -> closed (probes_succeeded) by b", "final {"} {
			if !strings.Contains(log, want) {
				t.Errorf("%s: log lacks %q:\n%s", in.name, want, log)
			}
		}
	}
	if st := fa.Events; st.Trips != 1 {
		t.Errorf("a: heard %d trips, want 1", st.Trips)
	}
}

// TestBackgroundLoad checks that LOAD_INTERVAL makes calls by itself and
// that a stopped instance's final counts add up.
func TestBackgroundLoad(t *testing.T) {
	mr := miniredis.RunT(t)
	down := &flaky{}
	ds := httptest.NewServer(down)
	t.Cleanup(ds.Close)
	in := startInstance(t, "loader", map[string]string{
		"REDIS_URL":      "redis://" + mr.Addr(),
		"DOWNSTREAM_URL": ds.URL,
		"LOAD_INTERVAL":  "5ms",
		"LOAD_WORKERS":   "2",
		"STORE_TIMEOUT":  "10s", // not a test of timeouts
	})
	eventually(t, 5*time.Second, "no background calls", func() bool { return in.status().Calls.Succeeded >= 10 })
	in.stop()
	f := final(t, in)
	c := f.Calls
	if c.Made != c.Admitted || c.Admitted != c.Succeeded || c.Failed+c.Rejected+c.Ignored+c.Errored != 0 {
		t.Errorf("final calls %+v: want every call admitted and succeeded", c)
	}
	if got := down.requests.Load(); got != c.Admitted {
		t.Errorf("downstream got %d requests, the instance admitted %d", got, c.Admitted)
	}
	if f.Settings.LoadIntervalMS != 5 {
		t.Errorf("settings %+v, want load_interval_ms 5", f.Settings)
	}
}

func TestUsageListsEveryVariable(t *testing.T) {
	u := usage()
	for _, e := range env {
		if !strings.Contains(u, e.name) {
			t.Errorf("usage lacks %s", e.name)
		}
	}
}
