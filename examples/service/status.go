package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// status is what GET /status returns.
type status struct {
	Instance string `json:"instance"`
	// Breaker is the breaker's name: the downstream's host.
	Breaker string `json:"breaker"`
	// State is the state that decides this instance's calls, without
	// asking Redis: the shared state as this instance sees it, or the
	// fallback's while Redis is away; Decider says which ("shared",
	// "local", "fail-open", "fail-closed").
	State   string `json:"state"`
	Decider string `json:"decider"`
	// StoreUp is false between a StoreUnavailable event and the next
	// StoreRecovered: this instance decides locally meanwhile.
	StoreUp bool `json:"store_up"`
	// Shared is the shared state read from Redis now; SharedError says why
	// it could not be read.
	Shared      *shared     `json:"shared,omitempty"`
	SharedError string      `json:"shared_error,omitempty"`
	Calls       callsJSON   `json:"calls"`
	Events      eventsJSON  `json:"events"`
	Settings    settingJSON `json:"settings"`
	UptimeMS    int64       `json:"uptime_ms"`
}

// shared is a breaker.Snapshot.
type shared struct {
	State         string     `json:"state"`
	Generation    int64      `json:"generation"`
	Reason        string     `json:"reason"`
	ChangedBy     string     `json:"changed_by"`
	InStateMS     int64      `json:"in_state_ms"`
	NextProbeInMS int64      `json:"next_probe_in_ms"`
	Counts        countsJSON `json:"counts"`
}

// countsJSON is a breaker.Counts.
type countsJSON struct {
	Successes           uint64 `json:"successes"`
	Failures            uint64 `json:"failures"`
	ConsecutiveFailures uint64 `json:"consecutive_failures"`
	ProbeSuccesses      uint64 `json:"probe_successes"`
	TotalSuccesses      uint64 `json:"total_successes"`
	TotalFailures       uint64 `json:"total_failures"`
	TotalStale          uint64 `json:"total_stale"`
	Trips               uint64 `json:"trips"`
	PreviousFailures    uint64 `json:"previous_failures"`
}

// callsJSON are this instance's counts of calls (one call makes up to
// RETRY_ATTEMPTS attempts). Admitted attempts end as succeeded, failed or
// ignored, as the breaker counts them; their sum, over every instance, is
// what the shared totals count once every outcome is reported.
type callsJSON struct {
	Made      int64 `json:"made"`
	Rejected  int64 `json:"rejected"`
	Errored   int64 `json:"errored"`
	Admitted  int64 `json:"admitted"`
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
	Ignored   int64 `json:"ignored"`
	Probes    int64 `json:"probes"`
}

// eventsJSON count the breaker's events this instance heard.
type eventsJSON struct {
	Transitions int64 `json:"transitions"`
	Trips       int64 `json:"trips"`
	// LocalTransitions are the local breaker's, while Redis was away.
	LocalTransitions int64 `json:"local_transitions"`
	StoreUnavailable int64 `json:"store_unavailable"`
	StoreRecovered   int64 `json:"store_recovered"`
	// Unreported is how many outcomes the instance could not report while
	// Redis was away (the sum of the StoreRecovered events' counts).
	Unreported int64 `json:"unreported"`
}

// settingJSON are the breaker settings in force.
type settingJSON struct {
	ConsecutiveFailures int    `json:"consecutive_failures"`
	OpenMS              int64  `json:"open_ms"`
	MaxProbes           int    `json:"max_probes"`
	ProbeSuccesses      int    `json:"probe_successes"`
	Fallback            string `json:"fallback"`
	Prefix              string `json:"prefix"`
	LoadIntervalMS      int64  `json:"load_interval_ms"`
}

// status returns the instance's status; withShared reads the shared state
// from Redis too.
func (s *service) status(ctx context.Context, withShared bool) status {
	c, e := &s.calls, &s.events
	st := status{
		Instance: s.cfg.Instance,
		Breaker:  s.br.Name(),
		State:    s.br.State().String(),
		Decider:  s.br.Decider().String(),
		StoreUp:  e.storeUp.Load(),
		Calls: callsJSON{
			Made: c.made.Load(), Rejected: c.rejected.Load(), Errored: c.errored.Load(),
			Admitted: c.admitted.Load(), Succeeded: c.succeeded.Load(), Failed: c.failed.Load(),
			Ignored: c.ignored.Load(), Probes: c.probes.Load(),
		},
		Events: eventsJSON{
			Transitions: e.transitions.Load(), Trips: e.trips.Load(), LocalTransitions: e.localTransitions.Load(),
			StoreUnavailable: e.storeUnavailable.Load(), StoreRecovered: e.storeRecovered.Load(),
			Unreported: e.unreported.Load(),
		},
		Settings: settingJSON{
			ConsecutiveFailures: s.cfg.Breaker.ConsecutiveFailures,
			OpenMS:              s.cfg.Breaker.OpenDuration.Milliseconds(),
			MaxProbes:           s.cfg.Breaker.MaxProbes,
			ProbeSuccesses:      s.cfg.Breaker.ProbeSuccesses,
			Fallback:            s.cfg.Breaker.Fallback.String(),
			Prefix:              s.cfg.Prefix,
			LoadIntervalMS:      s.cfg.Interval.Milliseconds(),
		},
		UptimeMS: time.Since(s.start).Milliseconds(),
	}
	if !withShared {
		return st
	}
	snap, err := s.br.Snapshot(ctx)
	if err != nil {
		st.SharedError = err.Error()
		return st
	}
	n := snap.Counts
	st.Shared = &shared{
		State:         snap.State.String(),
		Generation:    snap.Generation,
		Reason:        snap.Reason,
		ChangedBy:     snap.ChangedBy,
		InStateMS:     snap.InState.Milliseconds(),
		NextProbeInMS: snap.NextProbeIn.Milliseconds(),
		Counts: countsJSON{
			Successes: n.Successes, Failures: n.Failures, ConsecutiveFailures: n.ConsecutiveFailures,
			ProbeSuccesses: n.ProbeSuccesses, TotalSuccesses: n.TotalSuccesses, TotalFailures: n.TotalFailures,
			TotalStale: n.TotalStale, Trips: n.Trips, PreviousFailures: n.PreviousFailures,
		},
	}
	return st
}

// logger writes lines with a UTC timestamp and the instance's name.
type logger struct {
	mu       sync.Mutex
	w        io.Writer
	instance string
	now      func() time.Time
}

func (l *logger) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "%s %s: %s\n", l.now().UTC().Format("2006-01-02T15:04:05.000Z"), l.instance, fmt.Sprintf(format, args...))
}
