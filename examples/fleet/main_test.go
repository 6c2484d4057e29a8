package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/retry"
)

// TestSharedBreakerSavesTheDownstream runs the demonstration on both kinds
// of Redis and counts the requests each fleet sent into the outage, apart:
// those sent while the breakers were closed (to learn of the outage) and the
// probes. The outage lasts until every breaker has sent the same number of
// probes into it, and each run until every instance has been served again,
// so that the counts depend on the breakers and not on the machine's speed.
//
// Per-instance breakers each learn alone, from threshold failures of their
// own instance: at least instances × threshold requests, then a probe per
// breaker and open window. The shared breaker trips once; what it adds to
// its threshold is what was under way while the trip settled and spread,
// at most two requests per instance: one whose failure reached the store
// while it let the run of failures settle (a run made by several instances
// counts once a flush interval has passed, so that a success reported late
// can still end it), and one sent before the instance heard of the trip.
// Then it sends one probe per open window for the whole fleet. These bounds
// hold however loaded the machine (under load many instances fail at once,
// and the shared fleet's count rises towards them); with 20 instances, a threshold
// of 5 and 9 probes each they give the shared fleet at least 5 times fewer
// requests (runs, loaded or not, give 7 to 17 times).
func TestSharedBreakerSavesTheDownstream(t *testing.T) {
	const instances, threshold, probes = 20, 5, 9
	tests := []struct {
		name     string
		redis    func(t *testing.T) *redis.Options
		interval time.Duration
	}{
		{"miniredis", func(t *testing.T) *redis.Options {
			return &redis.Options{Addr: miniredis.RunT(t).Addr()}
		}, 150 * time.Millisecond},
		{"redis-server", func(t *testing.T) *redis.Options {
			return &redis.Options{Addr: redistest.Start(t).Addr()}
		}, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		tt := tt
		t.Run(tt.name, func(t *testing.T) {
			cfg := config{
				Instances: instances,
				Threshold: threshold,
				Healthy:   200 * time.Millisecond,
				// The outage lasts until each breaker has sent probes
				// probes into it; the run until every instance has been
				// served after it.
				Outage:       100 * time.Millisecond,
				OutageProbes: probes,
				Duration:     time.Second,
				Open:         200 * time.Millisecond,
				Interval:     tt.interval,
				Attempts:     5,
				// A loaded test machine must not send the fleet into its
				// fallback: that is tested elsewhere.
				StoreTimeout: 10 * time.Second,
				Redis:        tt.redis(t),
				RedisName:    tt.name,
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			var out bytes.Buffer
			res, err := run(ctx, cfg, &out)
			t.Logf("output:\n%s", out.String())
			if err != nil {
				t.Fatalf("run: got error %v, want none", err)
			}
			sh, per := res[0], res[1]
			if sh.Mode != shared || per.Mode != perInstance {
				t.Fatalf("got modes %v, %v, want shared, then per instance", sh.Mode, per.Mode)
			}
			for _, r := range res {
				t.Logf("%v: %d requests into the outage (%v): %d while closed, %d probes; %d trips after %d failures",
					r.Mode, r.Failing, r.Outage.Round(time.Millisecond), r.Failing-r.FailingProbes, r.FailingProbes, r.Trips, r.TripFailures)
			}
			I, T, K := int64(cfg.Instances), int64(cfg.Threshold), int64(cfg.OutageProbes)

			// Per-instance breakers: each trips on its own, after threshold
			// failures of its own, and probes on its own.
			if per.Trips != I {
				t.Errorf("per-instance breakers: got %d trips, want %d: one per instance", per.Trips, I)
			}
			if learn := per.Failing - per.FailingProbes; learn < I*T {
				t.Errorf("per-instance breakers: got %d requests into the outage while closed, want at least %d (%d instances × threshold %d)",
					learn, I*T, I, T)
			}
			if per.FailingProbes < I*K {
				t.Errorf("per-instance breakers: got %d probes into the outage, want at least %d (%d each)", per.FailingProbes, I*K, K)
			}

			// The shared breaker: one trip, learned from its threshold and
			// what was under way; then one probe at a time.
			if sh.Trips != 1 {
				t.Errorf("shared breaker: got %d trips, want 1", sh.Trips)
			}
			if learn := sh.Failing - sh.FailingProbes; learn < T || learn > T+2*I {
				t.Errorf("shared breaker: got %d requests into the outage while closed, want %d to %d (threshold %d, plus at most 2 per instance under way while the trip settled and spread)",
					learn, T, T+2*I, T)
			}
			if sh.FailingProbes != K {
				t.Errorf("shared breaker: got %d probes into the outage, want %d: one per open window, the %dth ended it", sh.FailingProbes, K, K)
			}

			// Together: at least I×(T+K) against at most T+2I+K.
			least, most := I*(T+K), T+2*I+K
			ratio := least / most
			if ratio < 5 {
				t.Fatalf("the configuration promises %d× fewer requests (%d against %d), want at least 5×", ratio, most, least)
			}
			if ratio*sh.Failing > per.Failing {
				t.Errorf("got %d requests into the outage with the shared breaker and %d with per-instance breakers, want at least %d× fewer (got %.1f×)",
					sh.Failing, per.Failing, ratio, float64(per.Failing)/float64(max(sh.Failing, 1)))
			}
			if sh.Probes >= per.Probes {
				t.Errorf("got %d probes with the shared breaker, want fewer than the %d of per-instance breakers", sh.Probes, per.Probes)
			}
			for _, r := range res {
				if !r.Recovered {
					t.Errorf("%v: not every instance was served again after the outage", r.Mode)
				}
				if r.Rejected == 0 {
					t.Errorf("%v: got no call rejected fast, want some while the breaker was open", r.Mode)
				}
			}
			for _, want := range []string{"Circuit OPEN: 127.0.0.1:", "Testing: 127.0.0.1:", "Recovered: 127.0.0.1:",
				"Retrying 127.0.0.1:", "instances]", "requests that reached the failing downstream"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q", want)
				}
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	good := config{Instances: 2, Threshold: 1, Outage: time.Second, Duration: 2 * time.Second,
		Open: time.Second, Interval: time.Second, Attempts: 1}
	if err := good.validate(); err != nil {
		t.Fatalf("valid config: got %v, want nil", err)
	}
	tests := []struct {
		name   string
		change func(*config)
		want   string
	}{
		{"no instances", func(c *config) { c.Instances = 0 }, "-instances 0"},
		{"too many instances", func(c *config) { c.Instances = 501 }, "-instances 501"},
		{"no threshold", func(c *config) { c.Threshold = 0 }, "-threshold 0"},
		{"no attempts", func(c *config) { c.Attempts = 0 }, "-attempts 0"},
		{"no outage", func(c *config) { c.Outage = 0 }, "-outage 0s"},
		{"short run", func(c *config) { c.Duration = time.Second }, "-duration 1s"},
		{"no open duration", func(c *config) { c.Open = 0 }, "-open 0s"},
		{"no interval", func(c *config) { c.Interval = 0 }, "-interval 0s"},
		{"negative outage probes", func(c *config) { c.OutageProbes = -1 }, "outage probes -1"},
	}
	for _, tt := range tests {
		c := good
		tt.change(&c)
		err := c.validate()
		if !errors.Is(err, errConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error matching errConfig that names %q", tt.name, err, tt.want)
		}
	}
}

func TestMainErrRejectsBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-instances", "0"}, "-instances 0"},
		{[]string{"-duration", "1s"}, "-duration 1s"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"-bogus"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		err := mainErr(tt.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("mainErr(%q): got %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
}

// TestHelp: -h prints the usage and is no error (the program exits 0).
func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		var stderr bytes.Buffer
		if err := mainErr([]string{arg}, io.Discard, &stderr); err != nil {
			t.Errorf("mainErr(%q): got %v, want nil", arg, err)
		}
		if !strings.Contains(stderr.String(), "Usage: go run ./examples/fleet") || !strings.Contains(stderr.String(), "-instances") {
			t.Errorf("mainErr(%q) printed %q, want the usage", arg, stderr.String())
		}
	}
}

// TestFeed checks the feed's lines: one per transition, however many
// instances report it; retries added up per attempt number; lines in order.
func TestFeed(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	var out bytes.Buffer
	f := newFeed(&out, false, "db:5432", 3, true, start)

	f.add(item{kind: noteItem, at: at(0), text: "Downstream db:5432 starts failing"})
	for i, b := range []time.Duration{10 * time.Millisecond, 40 * time.Millisecond} {
		f.add(item{kind: retryItem, at: at(10 + i), retry: retry.Event{Attempt: 1, MaxAttempts: 5, WillRetry: true, Backoff: b}})
	}
	open := breaker.Event{Kind: breaker.StateChanged, From: breaker.Closed, To: breaker.Open, Generation: 7,
		Reason: "consecutive_failures", NextProbeIn: time.Second, Counts: breaker.Counts{PreviousFailures: 5}}
	for i := 0; i < 3; i++ {
		f.add(item{kind: breakerItem, at: at(20 + i), breaker: open, id: "p", instance: i})
	}
	f.add(item{kind: retryItem, at: at(30), retry: retry.Event{Attempt: 1, MaxAttempts: 5, GateRefused: true}})
	f.add(item{kind: retryItem, at: at(31), retry: retry.Event{Attempt: 2, MaxAttempts: 5, GateRefused: true}})

	f.flush(at(100), false)
	if got, want := out.String(), "  0.00s  Downstream db:5432 starts failing\n"; got != want {
		t.Fatalf("at 0.1s: got %q, want only %q: the retries' slot is not over", got, want)
	}
	f.flush(at(600), false)
	f.add(item{kind: breakerItem, at: at(700), breaker: open, id: "p", instance: 2}) // late: already printed
	f.flush(at(2000), true)
	want := strings.Join([]string{
		"  0.00s  Downstream db:5432 starts failing",
		"  0.01s  Retrying db:5432 (2/5)… 2 calls, backoff 10ms–40ms",
		"  0.02s  Circuit OPEN: db:5432 blocked after 5 failures; next probe in 1.00s [seen by 3/3 instances]",
		"  1.00s  Blocked in the last second: 1 call rejected fast, 1 retry called off, nothing sent",
		"",
	}, "\n")
	if got := out.String(); got != want {
		t.Errorf("got feed\n%s\nwant\n%s", got, want)
	}
}

// TestFeedOrdersTransitionsByGeneration: a breaker's "Testing" line comes
// before the "probe failed" line of the same instant, even when the first
// instance to hear of the half-open state heard of it after another heard
// the breaker open again; a sighting of an older transition after a newer
// one was printed is dropped.
func TestFeedOrdersTransitionsByGeneration(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	var out bytes.Buffer
	f := newFeed(&out, false, "db:5432", 3, true, start)
	half := breaker.Event{Kind: breaker.StateChanged, From: breaker.Open, To: breaker.HalfOpen, Generation: 8,
		Reason: "open_timeout", Instance: "pod-02"}
	reopened := breaker.Event{Kind: breaker.StateChanged, From: breaker.HalfOpen, To: breaker.Open, Generation: 9,
		Reason: "probe_failed", NextProbeIn: time.Second}
	f.add(item{kind: breakerItem, at: at(1530), breaker: reopened, id: "p", instance: 0})
	f.add(item{kind: breakerItem, at: at(1531), breaker: half, id: "p", instance: 1})
	f.add(item{kind: breakerItem, at: at(1532), breaker: reopened, id: "p", instance: 1})
	f.flush(at(2000), false)
	f.add(item{kind: breakerItem, at: at(2100), breaker: half, id: "p", instance: 2}) // late
	f.flush(at(3000), true)
	want := "  1.53s  Testing: db:5432, pod-02 sends the fleet's one probe [seen by 1/3 instances]\n" +
		"  1.53s  Circuit OPEN: db:5432 blocked again, the probe failed; next probe in 1.00s [seen by 2/3 instances]\n"
	if got := out.String(); got != want {
		t.Errorf("got feed\n%s\nwant\n%s", got, want)
	}
}

// TestFeedLocalBreakers: while Redis is away, the transitions of the
// instances' local breakers share a line per state.
func TestFeedLocalBreakers(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	f := newFeed(&out, false, "db:5432", 3, true, start)
	down := breaker.Event{Kind: breaker.StoreUnavailable, Fallback: breaker.FallbackLocal, Decider: breaker.DecideLocal}
	open := breaker.Event{Kind: breaker.StateChanged, From: breaker.Closed, To: breaker.Open,
		Reason: "consecutive_failures", Decider: breaker.DecideLocal}
	for i := 0; i < 3; i++ {
		f.add(item{kind: breakerItem, at: start.Add(time.Duration(i) * time.Millisecond), breaker: down, id: "p", instance: i})
	}
	for i := 0; i < 2; i++ {
		f.add(item{kind: breakerItem, at: start.Add(time.Duration(10+i) * time.Millisecond), breaker: open, id: "p", instance: i})
	}
	f.flush(start.Add(time.Second), true)
	want := "  0.00s  Redis unreachable: 3 instances decide locally (fallback local)\n" +
		"  0.01s  Deciding locally: 2 instances open their local breakers\n"
	if got := out.String(); got != want {
		t.Errorf("got feed\n%s\nwant\n%s", got, want)
	}
}

// TestFeedPerInstance checks that transitions of separate breakers (one per
// instance) share a line.
func TestFeedPerInstance(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	f := newFeed(&out, false, "db:5432", 2, false, start)
	half := breaker.Event{Kind: breaker.StateChanged, From: breaker.Open, To: breaker.HalfOpen, Generation: 3, Reason: "open_timeout"}
	f.add(item{kind: breakerItem, at: start, breaker: half, id: "p1", instance: 0})
	f.add(item{kind: breakerItem, at: start.Add(time.Millisecond), breaker: half, id: "p2", instance: 1})
	closed := breaker.Event{Kind: breaker.StateChanged, From: breaker.HalfOpen, To: breaker.Closed, Generation: 4, Reason: "probes_succeeded"}
	f.add(item{kind: breakerItem, at: start.Add(2 * time.Millisecond), breaker: closed, id: "p2", instance: 1})
	f.flush(start.Add(time.Second), false)
	want := "  0.00s  Testing: db:5432, 2 probes let through [2 breakers, one per instance]\n" +
		"  0.00s  Recovered: db:5432 [pod-02's own breaker]\n"
	if got := out.String(); got != want {
		t.Errorf("got feed\n%s\nwant\n%s", got, want)
	}
}

func TestColour(t *testing.T) {
	var out bytes.Buffer
	start := time.Now()
	f := newFeed(&out, true, "db:5432", 1, true, start)
	f.add(item{kind: retryItem, at: start, retry: retry.Event{Attempt: 1, MaxAttempts: 2, WillRetry: true, Backoff: time.Millisecond}})
	f.flush(start, true)
	if got, want := out.String(), "\x1b[2m  0.00s\x1b[0m  \x1b[33mRetrying db:5432 (2/2)… 1 call, backoff 1ms\x1b[0m\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if isTerminal(&out) {
		t.Errorf("isTerminal(a buffer): got true, want false")
	}
}
