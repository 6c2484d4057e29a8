// Downstream is a flaky HTTP dependency for trying a fleet of
// examples/service instances: it answers every request, and its failure is
// switched on and off over HTTP. It counts exactly what reaches it, so that
// a test or a person can see how much traffic a shared breaker lets through
// during an outage.
//
// Usage:
//
//	go run ./examples/downstream
//
// Environment:
//
//	ADDR         listen address (default ":8080")
//	FAIL_STATUS  status of a failed answer (default 503)
//	FAIL_DELAY   how long a failed answer takes, a Go duration (default 0)
//	FAILING      "1" to start failing (default: healthy)
//
// Endpoints:
//
//	POST /fail    start failing; ?status=500 and ?delay=200ms override FAIL_STATUS and FAIL_DELAY
//	POST /heal    stop failing
//	GET  /stats   the counts as JSON (see stats)
//	POST /reset   zero the counts (the failure switch stays as it is)
//	GET  /healthz 200 "ok", never counted
//
// Every other request is the dependency's API: 200 "ok" while healthy, the
// failure status after the failure delay while failing. A request whose
// X-Breakwater-Probe header is "1" (examples/service sets it on half-open
// probes) is counted as a probe as well.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	log.SetFlags(0)
	log.SetOutput(os.Stdout)
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := configFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	d := newDownstream(cfg)
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("downstream: listen: %w", err)
	}
	srv := &http.Server{Handler: d, ReadHeaderTimeout: 10 * time.Second}
	logf("listening on %s (failing=%v, fail status %d, fail delay %v)", ln.Addr(), cfg.failing, cfg.status, cfg.delay)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("downstream: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("downstream: shutdown: %w", err)
	}
	logf("stopped: %s", d.stats().String())
	return nil
}

// logf prints one line to stdout with a UTC timestamp.
func logf(format string, args ...any) {
	log.Printf("%s downstream: %s", time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), fmt.Sprintf(format, args...))
}
