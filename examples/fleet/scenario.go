package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// config is one demonstration: the fleet, the outage and the breaker.
type config struct {
	Instances int           // instances in the fleet
	Threshold int           // consecutive failures that open a breaker
	Healthy   time.Duration // healthy start, before the outage
	Outage    time.Duration // how long the downstream fails
	Duration  time.Duration // length of each run
	Open      time.Duration // how long a breaker stays open before a probe
	Interval  time.Duration // time between two calls of one instance
	Attempts  int           // attempts per call (the retry policy's MaxAttempts)

	// StoreTimeout bounds each Redis call (zero: the store's default).
	StoreTimeout time.Duration

	Redis     *redis.Options // each instance makes its own client from these
	RedisName string         // says which Redis in the header
	Color     bool           // ANSI colours in the feed
}

// errConfig is matched by the errors of an invalid config.
var errConfig = errors.New("fleet: invalid configuration")

func (c config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", errConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Instances < 1 || c.Instances > 500:
		return bad("-instances %d: want 1 to 500", c.Instances)
	case c.Threshold < 1:
		return bad("-threshold %d: want at least 1", c.Threshold)
	case c.Attempts < 1:
		return bad("-attempts %d: want at least 1", c.Attempts)
	case c.Healthy < 0:
		return bad("healthy start %v: want >= 0", c.Healthy)
	case c.Outage <= 0:
		return bad("-outage %v: want > 0", c.Outage)
	case c.Open < time.Millisecond:
		return bad("-open %v: want at least 1ms", c.Open)
	case c.Interval < time.Millisecond:
		return bad("-interval %v: want at least 1ms", c.Interval)
	case c.Duration <= c.Healthy+c.Outage:
		return bad("-duration %v: want more than the healthy start (%v) plus the outage (%v)",
			c.Duration, c.Healthy, c.Outage)
	}
	return nil
}

// mode is how the fleet's breakers are keyed.
type mode int

const (
	// shared: every instance uses the same store prefix, so they hold one
	// breaker between them.
	shared mode = iota
	// perInstance: each instance uses its own prefix, so each has a breaker
	// of its own, with the same settings: per-process breakers.
	perInstance
)

func (m mode) String() string {
	if m == shared {
		return "one shared breaker"
	}
	return "a breaker per instance"
}

// result is what one run measured. Failing, Served and Probes are counted by
// the downstream as requests arrive; Rejected by the instances.
type result struct {
	Mode mode
	// Calls the instances made, and how many succeeded.
	Calls, OK int64
	// Failing is how many requests reached the downstream while it failed.
	Failing int64
	// Served is how many requests the downstream answered 200.
	Served int64
	// Rejected is how many calls failed fast: rejected by an open breaker
	// without sending a single request.
	Rejected int64
	// Probes is how many requests were sent as half-open probes.
	Probes int64
	// Recovery is the time from the downstream's recovery until every
	// instance had made a successful call; Recovered is false when some
	// instance had not by the end of the run.
	Recovery  time.Duration
	Recovered bool
}

// run runs the scenario twice, with one shared breaker and with a breaker
// per instance, printing the activity feed and a comparison to out.
func run(ctx context.Context, cfg config, out io.Writer) ([2]result, error) {
	var res [2]result
	if err := cfg.validate(); err != nil {
		return res, err
	}
	if cfg.Redis == nil {
		return res, fmt.Errorf("%w: no Redis options", errConfig)
	}
	d := newDownstream()
	defer d.close()

	fmt.Fprintf(out, "%d instances, each with its own Redis client, store and HTTP transport, call\n", cfg.Instances)
	fmt.Fprintf(out, "http://%s/ every %v (up to %d attempts per call, retries with backoff).\n", d.host, cfg.Interval, cfg.Attempts)
	fmt.Fprintf(out, "The downstream is healthy for %v, fails (HTTP 503/500) for %v, then recovers.\n", cfg.Healthy, cfg.Outage)
	fmt.Fprintf(out, "Breakers open after %d consecutive failures and let a probe through after %v.\n", cfg.Threshold, cfg.Open)
	fmt.Fprintf(out, "Redis: %s.\n", cfg.RedisName)

	base := "fleet-" + nonce()
	titles := [2]string{
		fmt.Sprintf("ONE breaker shared by all %d instances (key prefix %s:shared)", cfg.Instances, base),
		fmt.Sprintf("a breaker PER instance, same settings (key prefixes %s:pod-NN)", base),
	}
	for i, m := range []mode{shared, perInstance} {
		fmt.Fprintf(out, "\n%s\n", paint(cfg.Color, bold, fmt.Sprintf("Run %d of 2, %v: %s", i+1, cfg.Duration, titles[i])))
		r, err := runMode(ctx, cfg, m, d, base, out)
		if err != nil {
			return res, err
		}
		res[i] = r
	}
	fmt.Fprintln(out)
	printTable(out, cfg, res)
	return res, nil
}

// runMode runs the scenario once.
func runMode(ctx context.Context, cfg config, m mode, d *downstream, base string, out io.Writer) (result, error) {
	res := result{Mode: m}
	d.reset()
	start := time.Now()
	f := newFeed(out, cfg.Color, d.host, cfg.Instances, m == shared, start)
	go f.run()
	defer f.close()

	fleet := make([]*instance, 0, cfg.Instances)
	defer func() {
		for _, in := range fleet {
			in.close()
		}
	}()
	for i := 0; i < cfg.Instances; i++ {
		prefix := base + ":shared"
		if m == perInstance {
			prefix = fmt.Sprintf("%s:pod-%02d", base, i+1)
		}
		in, err := newInstance(cfg, i, prefix, f)
		if err != nil {
			return res, fmt.Errorf("fleet: instance %d: %w", i+1, err)
		}
		fleet = append(fleet, in)
	}

	runCtx, cancel := context.WithDeadline(ctx, start.Add(cfg.Duration))
	defer cancel()
	var recoveredAt atomic.Int64 // UnixNano; 0 until the downstream recovers
	url := "http://" + d.host + "/"
	var wg sync.WaitGroup
	for _, in := range fleet {
		in := in
		// Independent pods do not call in step: spread the first calls.
		first := start.Add(time.Duration(mrand.Int63n(int64(cfg.Interval))))
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.loop(runCtx, url, first, cfg.Interval, &recoveredAt)
		}()
	}

	f.note(fmt.Sprintf("Downstream %s healthy", d.host))
	if wait(runCtx, start.Add(cfg.Healthy)) {
		d.failing.Store(true)
		f.note(fmt.Sprintf("Downstream %s starts failing (HTTP 503/500) for %v", d.host, cfg.Outage))
	}
	if wait(runCtx, start.Add(cfg.Healthy+cfg.Outage)) {
		d.failing.Store(false)
		recoveredAt.Store(time.Now().UnixNano())
		f.note(fmt.Sprintf("Downstream %s is back", d.host))
	}
	<-runCtx.Done()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}

	back := time.Unix(0, recoveredAt.Load())
	res.Recovered = recoveredAt.Load() != 0
	for _, in := range fleet {
		res.Calls += in.calls
		res.OK += in.okCalls
		res.Rejected += in.rejected
		if in.firstOK.IsZero() {
			res.Recovered = false
		} else if t := in.firstOK.Sub(back); t > res.Recovery {
			res.Recovery = t
		}
	}
	res.Failing = d.failed.Load()
	res.Served = d.served.Load()
	res.Probes = d.probes.Load()
	return res, nil
}

// loop makes the instance's calls, one every interval from first, until ctx
// ends.
func (in *instance) loop(ctx context.Context, url string, first time.Time, interval time.Duration, recoveredAt *atomic.Int64) {
	next := first
	for wait(ctx, next) {
		var back time.Time
		if ns := recoveredAt.Load(); ns != 0 {
			back = time.Unix(0, ns)
		}
		in.call(ctx, url, back)
		next = next.Add(interval)
		if now := time.Now(); next.Before(now) {
			next = now // a slow call delays the next; calls do not pile up
		}
	}
}

// wait waits until t and reports whether ctx is still live.
func wait(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return ctx.Err() == nil
	}
}

func nonce() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// printTable prints the two runs side by side.
func printTable(out io.Writer, cfg config, res [2]result) {
	row := func(label, a, b string) {
		fmt.Fprintf(out, "%-44s %14s %18s\n", label, a, b)
	}
	recovery := func(r result) string {
		if !r.Recovered {
			return "not in run"
		}
		return fmt.Sprintf("%.2fs", r.Recovery.Seconds())
	}
	s, p := res[0], res[1]
	row(fmt.Sprintf("%d instances, threshold %d, outage %v", cfg.Instances, cfg.Threshold, cfg.Outage), "ONE breaker", "breaker/instance")
	row("calls made by the fleet", fmt.Sprint(s.Calls), fmt.Sprint(p.Calls))
	row("requests that reached the failing downstream", fmt.Sprint(s.Failing), fmt.Sprint(p.Failing))
	row("calls rejected fast (no request sent)", fmt.Sprint(s.Rejected), fmt.Sprint(p.Rejected))
	row("probes sent", fmt.Sprint(s.Probes), fmt.Sprint(p.Probes))
	row("time to recover (every instance served)", recovery(s), recovery(p))
	fmt.Fprintln(out)
	switch {
	case s.Failing == 0:
		fmt.Fprintf(out, "The shared breaker sent no request into the outage; per-instance breakers sent %d.\n", p.Failing)
	default:
		fmt.Fprintf(out, "The shared breaker sent %.1f× fewer requests into the outage (%d against %d).\n",
			float64(p.Failing)/float64(s.Failing), s.Failing, p.Failing)
	}
}
