package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/store"
)

// config is the service's configuration, read from the environment.
type config struct {
	Addr        string // ADDR: listen address
	RedisURL    string // REDIS_URL
	redis       *redis.Options
	Downstream  *url.URL      // DOWNSTREAM_URL
	Instance    string        // INSTANCE
	Prefix      string        // STORE_PREFIX
	Interval    time.Duration // LOAD_INTERVAL: 0 means no background load
	Workers     int           // LOAD_WORKERS
	CallTimeout time.Duration // CALL_TIMEOUT
	Attempts    int           // RETRY_ATTEMPTS
	Breaker     breaker.Settings
	Store       store.Options
}

// env lists the variables the service reads, with their defaults, for the
// usage message and the package documentation.
var env = []struct{ name, def, what string }{
	{"ADDR", ":8080", "listen address of /status, /work and /healthz"},
	{"REDIS_URL", "redis://localhost:6379/0", "the shared Redis: redis://[user:password@]host:port/db, or rediss:// for TLS"},
	{"DOWNSTREAM_URL", "(required)", "the dependency to call, e.g. http://downstream:8080/api"},
	{"INSTANCE", "the host name", "this instance's name in the shared state; unique in the fleet"},
	{"STORE_PREFIX", "breakwater-service", "key prefix of the shared state: instances with the same prefix share breakers"},
	{"LOAD_INTERVAL", "0 (off)", "call the downstream in the background every interval, e.g. 100ms"},
	{"LOAD_WORKERS", "1", "background callers, each calling every LOAD_INTERVAL"},
	{"CALL_TIMEOUT", "2s", "bound of one call to the downstream, retries included"},
	{"RETRY_ATTEMPTS", "1", "attempts per call (1: no retries)"},
	{"BREAKER_FAILURES", "5", "consecutive failures, fleet-wide, that open the breaker"},
	{"BREAKER_OPEN", "5s", "how long the breaker stays open before a probe"},
	{"BREAKER_MAX_PROBES", "1", "probes at once, fleet-wide, while half-open"},
	{"BREAKER_PROBE_SUCCESSES", "1", "successful probes that close the breaker"},
	{"BREAKER_FALLBACK", "local", "how to decide while Redis is away: local, open or closed"},
	{"STORE_TIMEOUT", "250ms", "bound of every Redis call"},
	{"STORE_COOLDOWN", "1s", "how long the store fails fast after Redis failed"},
}

// configFromEnv reads the configuration through getenv (os.Getenv); hostname
// (os.Hostname) names the instance when INSTANCE is unset.
func configFromEnv(getenv func(string) string, hostname func() (string, error)) (config, error) {
	cfg := config{
		Addr:        ":8080",
		RedisURL:    "redis://localhost:6379/0",
		Instance:    getenv("INSTANCE"),
		Prefix:      "breakwater-service",
		Workers:     1,
		CallTimeout: 2 * time.Second,
		Attempts:    1,
		Breaker: breaker.Settings{
			ConsecutiveFailures: 5,
			OpenDuration:        5 * time.Second,
			MaxProbes:           1,
			ProbeSuccesses:      1,
		},
		Store: store.Options{Timeout: 250 * time.Millisecond, Cooldown: time.Second},
	}
	p := parser{getenv: getenv}
	p.str("ADDR", &cfg.Addr)
	p.str("REDIS_URL", &cfg.RedisURL)
	p.str("STORE_PREFIX", &cfg.Prefix)
	p.duration("LOAD_INTERVAL", &cfg.Interval, 0)
	p.integer("LOAD_WORKERS", &cfg.Workers, 1)
	p.duration("CALL_TIMEOUT", &cfg.CallTimeout, time.Millisecond)
	p.integer("RETRY_ATTEMPTS", &cfg.Attempts, 1)
	p.integer("BREAKER_FAILURES", &cfg.Breaker.ConsecutiveFailures, 1)
	p.duration("BREAKER_OPEN", &cfg.Breaker.OpenDuration, time.Millisecond)
	p.integer("BREAKER_MAX_PROBES", &cfg.Breaker.MaxProbes, 1)
	p.integer("BREAKER_PROBE_SUCCESSES", &cfg.Breaker.ProbeSuccesses, 1)
	p.duration("STORE_TIMEOUT", &cfg.Store.Timeout, time.Millisecond)
	p.duration("STORE_COOLDOWN", &cfg.Store.Cooldown, time.Millisecond)
	switch v := getenv("BREAKER_FALLBACK"); v {
	case "", "local":
		cfg.Breaker.Fallback = breaker.FallbackLocal
	case "open":
		cfg.Breaker.Fallback = breaker.FallbackOpen
	case "closed":
		cfg.Breaker.Fallback = breaker.FallbackClosed
	default:
		p.fail("BREAKER_FALLBACK", v, "want local, open or closed")
	}
	if p.err != nil {
		return config{}, p.err
	}

	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return config{}, fmt.Errorf("service: REDIS_URL=%q: %w", redact(cfg.RedisURL), err)
	}
	cfg.redis = opts

	raw := getenv("DOWNSTREAM_URL")
	if raw == "" {
		return config{}, fmt.Errorf("service: DOWNSTREAM_URL is not set; want the dependency's URL, e.g. http://downstream:8080/api")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return config{}, fmt.Errorf("service: DOWNSTREAM_URL=%q: want an http:// or https:// URL with a host", raw)
	}
	cfg.Downstream = u

	if cfg.Instance == "" {
		h, err := hostname()
		if err != nil || h == "" {
			return config{}, fmt.Errorf("service: INSTANCE is not set and the host name is unknown (%v); set INSTANCE", err)
		}
		cfg.Instance = h
	}
	if strings.ContainsAny(cfg.Prefix, "{}") {
		return config{}, fmt.Errorf("service: STORE_PREFIX=%q: want no braces (they delimit the keys' hash tag)", cfg.Prefix)
	}
	cfg.Breaker.Instance = cfg.Instance
	cfg.Store.Prefix = cfg.Prefix
	if err := cfg.Breaker.Validate(); err != nil {
		return config{}, fmt.Errorf("service: breaker settings: %w", err)
	}
	return cfg, nil
}

// redact hides the password of a Redis URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// parser reads typed variables and keeps the first error.
type parser struct {
	getenv func(string) string
	err    error
}

func (p *parser) fail(name, v, want string) {
	if p.err == nil {
		p.err = fmt.Errorf("service: %s=%q: %s", name, v, want)
	}
}

func (p *parser) str(name string, dst *string) {
	if v := p.getenv(name); v != "" {
		*dst = v
	}
}

func (p *parser) integer(name string, dst *int, least int) {
	v := p.getenv(name)
	if v == "" {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < least {
		p.fail(name, v, fmt.Sprintf("want an integer of at least %d", least))
		return
	}
	*dst = n
}

func (p *parser) duration(name string, dst *time.Duration, least time.Duration) {
	v := p.getenv(name)
	if v == "" {
		return
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < least {
		p.fail(name, v, fmt.Sprintf("want a Go duration of at least %v, such as 100ms", least))
		return
	}
	*dst = d
}

// usage describes the environment.
func usage() string {
	s := "Usage: service (configured by the environment)\n\n"
	for _, e := range env {
		s += fmt.Sprintf("  %-24s %s (default %s)\n", e.name, e.what, e.def)
	}
	return s
}
