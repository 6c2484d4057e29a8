package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/store"
)

type statusFlags struct {
	json    bool
	window  time.Duration
	buckets int
}

func statusCommand() command {
	f := &statusFlags{}
	return command{
		name: "status", args: "[PATTERN]", min: 0, max: 1,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&f.json, "json", false, "print a JSON array instead of the table")
			fs.DurationVar(&f.window, "window", breaker.DefaultWindow, "the breakers' Settings.Window")
			fs.IntVar(&f.buckets, "buckets", breaker.DefaultWindowBuckets, "the breakers' Settings.WindowBuckets")
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			pattern := "*"
			if len(args) == 1 {
				pattern = args[0]
			}
			return c.status(ctx, pattern, f)
		},
	}
}

// row is one breaker as status shows it.
type row struct {
	Name       string   `json:"name"`
	State      string   `json:"state"`
	Generation int64    `json:"generation"`
	Failures   uint64   `json:"failures"`
	Calls      uint64   `json:"calls"`
	FailRate   *float64 `json:"failure_rate"` // null without calls
	// Windowed: Failures and Calls are the sliding window's; else the
	// current generation's.
	Windowed     bool      `json:"windowed"`
	NextProbeMS  *int64    `json:"next_probe_in_ms"` // open only
	Leases       int       `json:"probe_leases"`
	Instances    []string  `json:"instances"`
	ChangedAt    time.Time `json:"changed_at"`
	InStateMS    int64     `json:"in_state_ms"`
	ChangedBy    string    `json:"changed_by"`
	From         string    `json:"from"`
	Reason       string    `json:"reason"`
	Consecutive  uint64    `json:"consecutive_failures"`
	Trips        uint64    `json:"trips"`
	TotalSuccess uint64    `json:"total_successes"`
	TotalFailure uint64    `json:"total_failures"`
	TotalSlow    uint64    `json:"total_slow_calls"`
	TotalStale   uint64    `json:"total_stale"`
	Error        string    `json:"error,omitempty"`

	nextProbe time.Duration
	inState   time.Duration
}

func toRow(s store.Status) row {
	r := row{Name: s.Name, State: s.State.String(), Generation: s.Generation,
		Windowed: s.Windowed, Leases: s.Leases, Instances: s.Instances,
		ChangedAt: s.ChangedAt.UTC(), InStateMS: s.InState.Milliseconds(), ChangedBy: s.ChangedBy,
		From: s.From.String(), Reason: s.Reason, Consecutive: s.Counts.ConsecutiveFailures,
		Trips: s.Counts.Trips, TotalSuccess: s.Counts.TotalSuccesses, TotalFailure: s.Counts.TotalFailures,
		TotalSlow: s.Counts.TotalSlowCalls, TotalStale: s.Counts.TotalStale,
		nextProbe: s.NextProbeIn, inState: s.InState}
	if r.Instances == nil {
		r.Instances = []string{}
	}
	if s.Windowed {
		r.Failures, r.Calls = s.Counts.WindowFailures, s.Counts.WindowCalls
	} else {
		r.Failures, r.Calls = s.Counts.Failures, s.Counts.Successes+s.Counts.Failures
	}
	if r.Calls > 0 {
		rate := float64(r.Failures) / float64(r.Calls)
		r.FailRate = &rate
	}
	if s.State == breaker.Open {
		ms := s.NextProbeIn.Milliseconds()
		r.NextProbeMS = &ms
	}
	if s.Err != nil {
		r = row{Name: s.Name, State: "corrupt", Instances: []string{}, Error: s.Err.Error()}
	}
	return r
}

func (c *cli) status(ctx context.Context, pattern string, f *statusFlags) error {
	if f.window <= 0 || f.buckets <= 0 || f.buckets > 1000 {
		return usageError("status: --window %v --buckets %d: want a positive window and 1 to 1000 buckets", f.window, f.buckets)
	}
	ctx, cancel := context.WithTimeout(ctx, c.g.timeout)
	defer cancel()
	names, err := c.store.List(ctx, pattern)
	if err != nil {
		return err
	}
	sts, err := c.store.Inspect(ctx, store.InspectOptions{Window: f.window, WindowBuckets: f.buckets}, names...)
	if err != nil {
		return err
	}
	rows := make([]row, 0, len(sts))
	var bad []error
	for _, s := range sts {
		if !s.Exists && s.Err == nil {
			continue // expired since it was listed
		}
		if s.Err != nil {
			bad = append(bad, fmt.Errorf("breaker %q: %w", s.Name, s.Err))
		}
		rows = append(rows, toRow(s))
	}
	if f.json {
		if c.env.stable {
			for i := range rows {
				rows[i].mask()
			}
		}
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return err
		}
	} else {
		c.table(rows, pattern)
	}
	if len(bad) > 0 {
		return withCode(exitCorrupt, fmt.Errorf("%w; reset repairs a breaker", errors.Join(bad...)))
	}
	return nil
}

// mask replaces volatile values by fixed ones, for golden files.
func (r *row) mask() {
	if r.Error != "" {
		return
	}
	r.Generation = 1
	r.ChangedAt = time.Unix(0, 0).UTC()
	r.InStateMS = 0
	if r.NextProbeMS != nil {
		ms := int64(0)
		r.NextProbeMS = &ms
	}
}

func (c *cli) table(rows []row, pattern string) {
	if len(rows) == 0 {
		fmt.Fprintf(c.stdout, "no breakers matching %q under prefix %q\n", pattern, c.g.prefix)
		return
	}
	color := c.g.colored(c.env, c.stdout)
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tFAILURES\tCALLS\tRATE\tGENERATION\tNEXT PROBE\tINSTANCES\tCHANGED\tBY\tREASON")
	for _, r := range rows {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t%s\n", r.Name, paint(color, red, "corrupt"), "see below")
			continue
		}
		rate := "-"
		if r.FailRate != nil {
			rate = strconv.FormatFloat(*r.FailRate*100, 'f', 1, 64) + "%"
		}
		calls := strconv.FormatUint(r.Calls, 10)
		if !r.Windowed {
			calls += "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n",
			r.Name, paintState(color, r.State), r.Failures, calls, rate,
			c.stableOr("<gen>", strconv.FormatInt(r.Generation, 10)),
			c.nextProbe(r), len(r.Instances),
			c.stableOr("<ago>", human(r.inState)+" ago"), r.ChangedBy, r.Reason)
	}
	_ = tw.Flush()
	fmt.Fprintln(c.stdout, "* since the last transition: the breaker keeps no sliding window (no rate policy)")
}

// nextProbe says when the next probe is let through.
func (c *cli) nextProbe(r row) string {
	switch r.State {
	case breaker.Open.String():
		return c.stableOr("in <dur>", "in "+human(r.nextProbe))
	case breaker.HalfOpen.String():
		if r.Leases == 1 {
			return "probing (1 lease)"
		}
		return fmt.Sprintf("probing (%d leases)", r.Leases)
	case breaker.ForcedOpen.String():
		return "when closed"
	}
	return "-"
}

// human formats d briefly: 850ms, 12.3s, 4m05s, 2h03m, 3d04h.
func human(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + human(-d)
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Truncate(100*time.Millisecond).Seconds(), 'f', 1, 64) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// Colours, as in the fleet example's feed.
const (
	red    = "31"
	green  = "32"
	yellow = "33"
	cyan   = "36"
	dim    = "2"
)

func stateColor(state string) string {
	switch state {
	case breaker.Open.String(), breaker.ForcedOpen.String():
		return red
	case breaker.HalfOpen.String():
		return cyan
	case breaker.Closed.String():
		return green
	}
	return yellow
}

// paintState colours a state's name. tabwriter counts the escape sequences
// as text; they have the same length for every colour, so a column whose
// cells are all coloured stays aligned.
func paintState(on bool, state string) string { return paint(on, stateColor(state), state) }

// paint colours s when on.
func paint(on bool, colour, s string) string {
	if !on {
		return s
	}
	return "\x1b[" + colour + "m" + s + "\x1b[0m"
}
