// Fleet shows a fleet of service instances sharing one circuit breaker, and
// what that saves a failing dependency.
//
// It starts a local HTTP server (the downstream) and a fleet of instances
// that call it through Breakwater's HTTP transport, each with its own Redis
// client, store and breaker objects, as separate pods would have. The
// downstream fails for a while, then recovers. The scenario runs twice: once
// with one breaker shared by the whole fleet, once with a breaker per
// instance (the same settings under a key prefix per instance, as
// per-process breakers would be). A live feed shows retries and breaker
// transitions; a table compares the two runs.
//
// Usage:
//
//	go run ./examples/fleet [flags]
//
// Redis is embedded (miniredis) unless REDIS_URL is set, e.g.
// REDIS_URL=redis://localhost:6379/0. The feed is coloured when stdout is a
// terminal, unless -no-color is given or NO_COLOR is set.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

func main() {
	if err := mainErr(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func mainErr(args []string, stdout, stderr io.Writer) error {
	cfg := config{Healthy: 500 * time.Millisecond}
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.Instances, "instances", 20, "instances in the fleet")
	fs.IntVar(&cfg.Threshold, "threshold", 5, "consecutive failures that open a breaker (ConsecutiveFailures)")
	fs.DurationVar(&cfg.Outage, "outage", 3*time.Second, "how long the downstream fails")
	fs.DurationVar(&cfg.Duration, "duration", 6*time.Second, "length of each of the two runs")
	fs.DurationVar(&cfg.Open, "open", time.Second, "how long a breaker stays open before it lets a probe through (OpenDuration)")
	fs.DurationVar(&cfg.Interval, "interval", 100*time.Millisecond, "time between two calls of one instance")
	fs.IntVar(&cfg.Attempts, "attempts", 5, "attempts per call (retry MaxAttempts)")
	noColor := fs.Bool("no-color", false, "plain output, without ANSI colours")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: go run ./examples/fleet [flags]\n\n")
		fmt.Fprintf(stderr, "A fleet calls a failing HTTP service, once with ONE shared breaker and once\n")
		fmt.Fprintf(stderr, "with a breaker per instance. Redis is embedded unless REDIS_URL is set.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // -h asked for the usage, which was printed
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("fleet: unexpected arguments %q (see -h)", fs.Args())
	}
	cfg.Color = !*noColor && os.Getenv("NO_COLOR") == "" && isTerminal(stdout)
	if err := cfg.validate(); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	if url := os.Getenv("REDIS_URL"); url != "" {
		opts, err := redis.ParseURL(url)
		if err != nil {
			return fmt.Errorf("fleet: REDIS_URL: %w", err)
		}
		c := redis.NewClient(opts)
		err = c.Ping(ctx).Err()
		_ = c.Close()
		if err != nil {
			return fmt.Errorf("fleet: REDIS_URL: redis at %s does not answer: %w", opts.Addr, err)
		}
		cfg.Redis, cfg.RedisName = opts, fmt.Sprintf("%s (REDIS_URL)", opts.Addr)
	} else {
		m, err := miniredis.Run()
		if err != nil {
			return fmt.Errorf("fleet: start embedded redis: %w", err)
		}
		defer m.Close()
		cfg.Redis = &redis.Options{Addr: m.Addr()}
		cfg.RedisName = "embedded miniredis (set REDIS_URL=redis://host:port to use a real one)"
	}
	_, err := run(ctx, cfg, stdout)
	return err
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
