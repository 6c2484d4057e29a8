// Service is an HTTP service as a user would deploy it, several replicas
// strong: it calls a downstream dependency through Breakwater's HTTP
// transport, whose per-host breaker every replica shares through Redis.
// Run three of them against one Redis and a flaky downstream
// (examples/downstream) and they trip together, send one probe between
// them, and recover together: see docker-compose.yml and the README's "Run
// it as a fleet".
//
// Usage:
//
//	DOWNSTREAM_URL=http://localhost:8090/api REDIS_URL=redis://localhost:6379/0 go run ./examples/service
//
// Environment (run with -h for the defaults):
//
//	ADDR                     listen address of the endpoints
//	REDIS_URL                the shared Redis, redis:// or rediss:// (TLS)
//	DOWNSTREAM_URL           the dependency to call (required)
//	INSTANCE                 this instance's name in the shared state (default: the host name)
//	STORE_PREFIX             key prefix: instances with the same prefix share breakers
//	LOAD_INTERVAL            call the downstream in the background every interval (default: off)
//	LOAD_WORKERS             background callers
//	CALL_TIMEOUT             bound of one call, retries included
//	RETRY_ATTEMPTS           attempts per call
//	BREAKER_FAILURES         consecutive failures, fleet-wide, that open the breaker
//	BREAKER_OPEN             how long the breaker stays open before a probe
//	BREAKER_MAX_PROBES       probes at once, fleet-wide, while half-open
//	BREAKER_PROBE_SUCCESSES  successful probes that close the breaker
//	BREAKER_FALLBACK         local, open or closed: how to decide while Redis is away
//	STORE_TIMEOUT            bound of every Redis call
//	STORE_COOLDOWN           how long the store fails fast after Redis failed
//
// Endpoints:
//
//	GET /status   JSON: this instance's view of the breaker, the shared state
//	              read from Redis (state, generation, counts, trips), and the
//	              instance's calls (made, admitted, rejected, succeeded,
//	              failed, probes) and the events it heard
//	GET /work     one call to the downstream: 200 when it succeeded, 502 when
//	              it failed, 503 when the breaker rejected it
//	GET /healthz  200 "ok"
//
// Every transition of the shared breaker, whichever replica caused it, and
// every loss and recovery of Redis is logged to stdout with a timestamp. On
// SIGTERM or SIGINT the service stops its background calls, lets calls in
// flight finish and report their outcomes, and logs its final counts as one
// line "final {...}" holding the /status JSON without the shared state.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		fmt.Fprint(os.Stderr, usage())
		if os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "-help" {
			os.Exit(0)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run serves until ctx ends, then shuts down in order. When ready is not
// nil, it receives the listener's address once the service serves.
func run(ctx context.Context, getenv func(string) string, stdout io.Writer, ready chan<- string) error {
	cfg, err := configFromEnv(getenv, os.Hostname)
	if err != nil {
		return err
	}
	log := &logger{w: stdout, now: time.Now, instance: cfg.Instance}
	s, err := newService(cfg, log)
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			s.close()
		}
	}()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("service: listen: %w", err)
	}
	srv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.printf("serving on %s: breaker %s shared through %s (prefix %q); %d failures open it for %v; background load every %v",
		ln.Addr(), s.br.Name(), redact(cfg.RedisURL), cfg.Prefix, cfg.Breaker.ConsecutiveFailures, cfg.Breaker.OpenDuration, cfg.Interval)
	if ready != nil {
		ready <- ln.Addr().String()
	}

	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.load(loadCtx)
	}()

	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}
	log.printf("stopping")
	stopLoad()
	wg.Wait() // background calls in flight have finished
	sctx, cancel := context.WithTimeout(context.Background(), cfg.CallTimeout+5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		serveErr = errors.Join(serveErr, err)
	}
	// Closing the transport closes the breaker, which reports what it
	// still holds before it lets go.
	s.close()
	closed = true
	final, _ := json.Marshal(s.status(context.Background(), false))
	log.printf("final %s", final)
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("service: serve: %w", serveErr)
	}
	return nil
}
