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

	"github.com/breakwater-go/breakwater/breaker"
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

	// OutageProbes, when above 0, makes the outage last past Outage until
	// every breaker of the fleet has sent this many probes into it, and the
	// run last past Duration until every instance has been served after the
	// outage. The two runs then compare the same number of open windows,
	// each to its end, however slow the machine: the tests' setting. At 0
	// (the demo) the outage lasts Outage and the run Duration.
	OutageProbes int

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
	case c.OutageProbes < 0:
		return bad("outage probes %d: want >= 0", c.OutageProbes)
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

// result is what one run measured. Failing, FailingProbes, Served and Probes
// are counted by the downstream as requests arrive; Rejected by the
// instances; Trips and TripFailures from the breakers' transitions.
type result struct {
	Mode mode
	// Calls the instances made, and how many succeeded.
	Calls, OK int64
	// Failing is how many requests reached the downstream while it failed;
	// FailingProbes how many of them were probes. The others were sent
	// while the breakers were closed: to learn of the outage.
	Failing, FailingProbes int64
	// Trips is how many times a breaker opened on failures: once for a
	// breaker the fleet shares, once per instance for breakers of their own.
	// TripFailures adds up the failures each breaker had counted when it
	// opened: its threshold, or more when several instances' failures
	// reached it at once.
	Trips, TripFailures int64
	// Served is how many requests the downstream answered 200.
	Served int64
	// Rejected is how many calls failed fast: rejected by an open breaker
	// without sending a single request.
	Rejected int64
	// Probes is how many requests were sent as half-open probes.
	Probes int64
	// Outage is how long the downstream failed.
	Outage time.Duration
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
	if cfg.OutageProbes > 0 {
		fmt.Fprintf(out, "The downstream is healthy for %v, fails (HTTP 503/500) until each breaker has sent\n", cfg.Healthy)
		fmt.Fprintf(out, "%d probes into the outage (and for %v at least), then recovers.\n", cfg.OutageProbes, cfg.Outage)
	} else {
		fmt.Fprintf(out, "The downstream is healthy for %v, fails (HTTP 503/500) for %v, then recovers.\n", cfg.Healthy, cfg.Outage)
	}
	fmt.Fprintf(out, "Breakers open after %d consecutive failures and let a probe through after %v.\n", cfg.Threshold, cfg.Open)
	fmt.Fprintf(out, "Redis: %s.\n", cfg.RedisName)

	base := "fleet-" + nonce()
	titles := [2]string{
		fmt.Sprintf("ONE breaker shared by all %d instances (key prefix %s:shared)", cfg.Instances, base),
		fmt.Sprintf("a breaker PER instance, same settings (key prefixes %s:pod-NN)", base),
	}
	length := fmt.Sprint(cfg.Duration)
	if cfg.OutageProbes > 0 {
		length = "until every instance is served again"
	}
	for i, m := range []mode{shared, perInstance} {
		fmt.Fprintf(out, "\n%s\n", paint(cfg.Color, bold, fmt.Sprintf("Run %d of 2, %s: %s", i+1, length, titles[i])))
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

	var t trips
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
		in, err := newInstance(cfg, i, prefix, f, &t)
		if err != nil {
			return res, fmt.Errorf("fleet: instance %d: %w", i+1, err)
		}
		fleet = append(fleet, in)
	}

	// The run ends by cancellation, not by a deadline: the breakers ignore a
	// call that its caller cancelled, where a deadline would count the calls
	// it cuts short as failures and could trip a breaker as the run ends.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var recoveredAt atomic.Int64 // UnixNano; 0 until the downstream recovers
	var served atomic.Int64      // instances served since then
	allServed := make(chan struct{})
	url := "http://" + d.host + "/"
	var wg sync.WaitGroup
	for _, in := range fleet {
		in := in
		// Independent pods do not call in step: spread the first calls.
		first := start.Add(time.Duration(mrand.Int63n(int64(cfg.Interval))))
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.loop(runCtx, url, first, cfg.Interval, &recoveredAt, func() {
				if served.Add(1) == int64(len(fleet)) {
					close(allServed)
				}
			})
		}()
	}

	f.note(fmt.Sprintf("Downstream %s healthy", d.host))
	if wait(runCtx, start.Add(cfg.Healthy)) {
		d.fail()
		if cfg.OutageProbes > 0 {
			f.note(fmt.Sprintf("Downstream %s starts failing (HTTP 503/500)", d.host))
		} else {
			f.note(fmt.Sprintf("Downstream %s starts failing (HTTP 503/500) for %v", d.host, cfg.Outage))
		}
	}
	if wait(runCtx, start.Add(cfg.Healthy+cfg.Outage)) {
		breakers := 1
		if m == perInstance {
			breakers = cfg.Instances
		}
		select {
		case <-d.recoverAfter(breakers, int64(cfg.OutageProbes)):
			_, until := d.outage()
			recoveredAt.Store(until.UnixNano())
			f.note(fmt.Sprintf("Downstream %s is back", d.host))
		case <-runCtx.Done():
		}
	}
	if wait(runCtx, start.Add(cfg.Duration)) && cfg.OutageProbes > 0 {
		select {
		case <-allServed:
		case <-runCtx.Done():
		}
	}
	cancel()
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
	res.FailingProbes = d.failedProbes.Load()
	res.Trips, res.TripFailures = t.count()
	res.Served = d.served.Load()
	res.Probes = d.probes.Load()
	if from, until := d.outage(); !until.IsZero() {
		res.Outage = until.Sub(from)
	}
	return res, nil
}

// loop makes the instance's calls, one every interval from first, until ctx
// ends. served is called once, when the instance is first served after the
// downstream's recovery.
func (in *instance) loop(ctx context.Context, url string, first time.Time, interval time.Duration, recoveredAt *atomic.Int64, served func()) {
	next := first
	for wait(ctx, next) {
		var back time.Time
		if ns := recoveredAt.Load(); ns != 0 {
			back = time.Unix(0, ns)
		}
		was := in.firstOK
		in.call(ctx, url, back)
		if was.IsZero() && !in.firstOK.IsZero() {
			served()
		}
		next = next.Add(interval)
		if now := time.Now(); next.Before(now) {
			next = now // a slow call delays the next; calls do not pile up
		}
	}
}

// trips tallies the breakers' openings on failures, once per breaker and
// generation however many instances hear of it.
type trips struct {
	mu   sync.Mutex
	seen map[transitionKey]uint64 // the failures counted when it opened
}

// add counts e if it is a breaker of prefix opening on failures.
func (t *trips) add(prefix string, e breaker.Event) {
	if e.Kind != breaker.StateChanged || e.To != breaker.Open || e.Decider != breaker.DecideShared {
		return
	}
	switch e.Reason {
	case "consecutive_failures", "failure_rate", "slow_call_rate":
	default:
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil {
		t.seen = map[transitionKey]uint64{}
	}
	t.seen[transitionKey{id: prefix, gen: e.Generation}] = e.Counts.PreviousFailures
}

// count returns the trips and the failures that made them.
func (t *trips) count() (n, failures int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range t.seen {
		n++
		failures += int64(f)
	}
	return n, failures
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
	outage := fmt.Sprint(cfg.Outage)
	if cfg.OutageProbes > 0 {
		outage = fmt.Sprintf("%d probes", cfg.OutageProbes)
	}
	row(fmt.Sprintf("%d instances, threshold %d, outage %s", cfg.Instances, cfg.Threshold, outage), "ONE breaker", "breaker/instance")
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
