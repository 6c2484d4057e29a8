package breaker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/breakwater-go/breakwater/breaker/backend"
	"github.com/breakwater-go/breakwater/clock"
)

// Off disables the consecutive-failures policy when given as
// Settings.ConsecutiveFailures.
const Off = -1

// Fallback says how a breaker decides while its store is unreachable.
type Fallback int

const (
	// FallbackLocal decides with a local breaker (github.com/mercari/go-circuitbreaker)
	// that every outcome keeps warm, tripping on the same consecutive
	// failures (or failure rate) and open duration.
	FallbackLocal Fallback = iota
	// FallbackOpen lets every call through (fail open).
	FallbackOpen
	// FallbackClosed rejects every call (fail closed).
	FallbackClosed
)

var fallbackNames = [...]string{"local", "open", "closed"}

// String returns "local", "open" or "closed".
func (f Fallback) String() string {
	if f < 0 || int(f) >= len(fallbackNames) {
		return fmt.Sprintf("Fallback(%d)", int(f))
	}
	return fallbackNames[f]
}

// Clock tells the local time; it is the one clock type of every Breakwater
// package (package clock). It measures call durations and turns the store's
// "open for another 3.2 s" into a local deadline; it never decides anything
// shared, so instances whose clocks disagree still agree on every decision.
type Clock = clock.Clock

// Settings configure a Breaker. The zero value of every field means the
// documented default; the zero Settings trip after 5 consecutive failures
// across the fleet, stay open 60 s, and close after one successful probe.
//
// Their trip, open and probe policies travel with every request to the
// store, so instances should share them; when they differ, each request is
// judged by its sender's.
type Settings struct {
	// ConsecutiveFailures trips the breaker after this many failures in a
	// row, counted across the fleet (default 5; Off disables the policy).
	ConsecutiveFailures int
	// FailureRate trips the breaker when at least this fraction (0 < r <= 1)
	// of the calls in the window failed (default 0: off).
	FailureRate float64
	// SlowCallRate trips the breaker when at least this fraction of the
	// calls in the window were slow (default 0: off).
	SlowCallRate float64
	// SlowCallDuration makes a call that takes at least this long slow
	// (default 0: no call is slow; required when SlowCallRate is set).
	SlowCallDuration time.Duration
	// MinimumCalls is how many calls the window must hold before a rate
	// policy may trip (default 20).
	MinimumCalls int
	// Window is the length of the sliding window of the rate policies and
	// of the quorum (default 60 s).
	Window time.Duration
	// WindowBuckets is how many buckets the window slides by (default 10).
	WindowBuckets int
	// Quorum trips the breaker only when at least this many distinct
	// instances reported a failure or slow call (within the current run of
	// consecutive failures, or within the window), so one sick instance
	// cannot open the breaker for the fleet (default 1: any instance).
	Quorum int
	// OpenDuration is how long the breaker stays open before it lets a
	// probe through (default 60 s).
	OpenDuration time.Duration
	// MaxOpenDuration, when longer than OpenDuration, doubles the open
	// duration on each trip in a row (a failed probe), up to this
	// (default: OpenDuration, no growth).
	MaxOpenDuration time.Duration
	// OpenJitter varies each open duration by up to this fraction either
	// way (0 <= j < 1; default 0).
	OpenJitter float64
	// MaxProbes is how many probe calls may run at once across the whole
	// fleet while half-open (default 1).
	MaxProbes int
	// ProbeSuccesses is how many successful probes close the breaker (default 1).
	ProbeSuccesses int
	// ProbeLease is how long a probe holds its place; a prober that
	// vanishes without reporting frees it after this (default 30 s).
	ProbeLease time.Duration
	// Classify decides how a call's error counts. It is asked for every
	// non-nil error that is not marked with Ignore or MarkSuccess (or
	// go-circuitbreaker's Ignore or MarkAsSuccess) (default DefaultClassify).
	Classify func(ctx context.Context, err error) Outcome
	// Fallback says how to decide while the store is unreachable (default
	// FallbackLocal).
	Fallback Fallback
	// Instance names this instance in the shared state; it must be unique
	// in the fleet (default: host name, process id and a random suffix,
	// drawn for each breaker). Breakers of one name on one Store that are
	// live at once report under ids of their own, since the store counts
	// each instance's reports in order and once: the first as Instance, the
	// next as Instance#2, and so on (see Breaker.Instance).
	Instance string
	// Clock is the local clock (default: the system clock).
	Clock Clock
	// Reporting says how outcomes reach the store (default ReportBatched).
	Reporting Reporting
	// FlushInterval is how long a batched breaker gathers outcomes before it
	// reports them (default 5ms, at most MaxFlushInterval). Failures in the
	// closed state and probe results are reported at once.
	FlushInterval time.Duration
	// MaxBatch reports a batch at once when it holds this many outcomes
	// (default 1000).
	MaxBatch int
	// RefreshInterval bounds how stale this instance's view may grow when
	// pub/sub is silent: a breaker that heard nothing from the store for
	// this long reads its state (default 5s).
	RefreshInterval time.Duration
	// Observer, when set, is told of every call, rejection and store call
	// of the breaker, for metrics (default: none).
	Observer Observer
	// Logger, when set, logs the breaker's transitions (Info), the loss of
	// its store (Warn) and its recovery (Info) (default: silent).
	Logger *slog.Logger
}

// Reporting says how a breaker reports outcomes to its store.
type Reporting int

const (
	// ReportBatched counts outcomes locally and reports them in batches,
	// one store call per breaker per FlushInterval as a rule; a failure
	// while closed and a probe's result are reported at once (their Done
	// waits for the store's answer). A closed breaker's successful calls
	// then cost no I/O. The store orders outcomes by when they happened: a
	// run of failures that one instance made alone trips the breaker at
	// once; a run that several instances made counts once the successes
	// that came before its failures have had the time to arrive, so that a
	// success reported late can still end it. When such a run is long
	// enough to trip, the store asks every instance over pub/sub to report
	// what it holds at once (a "settle" call, verified as announcements
	// are), and the trip comes half a FlushInterval after the failure that
	// makes it (longer when a round trip is, or the time 9 in 10 of the
	// process's due reports take to arrive, on a loaded machine). A success
	// held by an instance that missed the call (its subscription was down,
	// or it runs a version without settle calls) arrives too late to end
	// the run, as a late report of a synchronous breaker would. A Store that
	// cannot make the call (not a backend.Settler) trips a FlushInterval
	// after the failure, and later by as much as the process's batches were
	// lately delivered late, up to ten intervals in all. Every outcome is
	// counted exactly once: a batch carries the instance and a sequence
	// number, and batches that could not be delivered wait for the store.
	ReportBatched Reporting = iota
	// ReportSync reports every outcome before Done returns, so that the
	// next call sees its effect; concurrent outcomes share a store call.
	ReportSync
)

// String returns "batched" or "sync".
func (r Reporting) String() string {
	switch r {
	case ReportBatched:
		return "batched"
	case ReportSync:
		return "sync"
	}
	return fmt.Sprintf("Reporting(%d)", int(r))
}

// Defaults of Settings.
const (
	DefaultConsecutiveFailures = 5
	DefaultMinimumCalls        = 20
	DefaultWindow              = 60 * time.Second
	DefaultWindowBuckets       = 10
	DefaultOpenDuration        = 60 * time.Second
	DefaultProbeLease          = 30 * time.Second
	DefaultFlushInterval       = 5 * time.Millisecond
	DefaultMaxBatch            = 1000
	DefaultRefreshInterval     = 5 * time.Second
)

// MaxFlushInterval bounds Settings.FlushInterval. A batch tells the store
// how late it may arrive (up to ten flush intervals, see ReportBatched),
// which the store's scripts take in microseconds; the bound keeps that
// well within their range. Intervals that long make sense only to report
// on Flush and Close alone.
const MaxFlushInterval = 24 * time.Hour

// normalize validates s and returns it with defaults applied.
func (s Settings) normalize() (Settings, error) {
	bad := func(field string, value any, want string) error {
		return &SettingsError{Field: field, Value: value, Reason: want}
	}
	switch {
	case s.ConsecutiveFailures < Off:
		return s, bad("ConsecutiveFailures", s.ConsecutiveFailures, "want > 0, 0 for the default, or Off")
	case !(s.FailureRate >= 0 && s.FailureRate <= 1): // also NaN
		return s, bad("FailureRate", s.FailureRate, "want 0 < rate <= 1, or 0 for off")
	case !(s.SlowCallRate >= 0 && s.SlowCallRate <= 1): // also NaN
		return s, bad("SlowCallRate", s.SlowCallRate, "want 0 < rate <= 1, or 0 for off")
	case s.SlowCallDuration < 0:
		return s, bad("SlowCallDuration", s.SlowCallDuration, "want >= 0")
	case s.SlowCallRate > 0 && s.SlowCallDuration == 0:
		return s, bad("SlowCallDuration", s.SlowCallDuration, "want > 0 when SlowCallRate is set")
	case s.MinimumCalls < 0:
		return s, bad("MinimumCalls", s.MinimumCalls, "want >= 0")
	case s.Window < 0:
		return s, bad("Window", s.Window, "want > 0, or 0 for the default")
	case s.WindowBuckets < 0 || s.WindowBuckets > 1000:
		return s, bad("WindowBuckets", s.WindowBuckets, "want 1 to 1000, or 0 for the default")
	case s.Quorum < 0:
		return s, bad("Quorum", s.Quorum, "want >= 1, or 0 for the default")
	case s.OpenDuration < 0:
		return s, bad("OpenDuration", s.OpenDuration, "want > 0, or 0 for the default")
	case s.MaxOpenDuration < 0:
		return s, bad("MaxOpenDuration", s.MaxOpenDuration, "want >= OpenDuration, or 0 for no growth")
	case !(s.OpenJitter >= 0 && s.OpenJitter < 1): // also NaN
		return s, bad("OpenJitter", s.OpenJitter, "want 0 <= jitter < 1")
	case s.MaxProbes < 0:
		return s, bad("MaxProbes", s.MaxProbes, "want >= 1, or 0 for the default")
	case s.ProbeSuccesses < 0:
		return s, bad("ProbeSuccesses", s.ProbeSuccesses, "want >= 1, or 0 for the default")
	case s.ProbeLease < 0:
		return s, bad("ProbeLease", s.ProbeLease, "want > 0, or 0 for the default")
	case s.Fallback < FallbackLocal || s.Fallback > FallbackClosed:
		return s, bad("Fallback", s.Fallback, "want FallbackLocal, FallbackOpen or FallbackClosed")
	case s.Reporting < ReportBatched || s.Reporting > ReportSync:
		return s, bad("Reporting", s.Reporting, "want ReportBatched or ReportSync")
	case s.FlushInterval < 0 || s.FlushInterval > MaxFlushInterval:
		return s, bad("FlushInterval", s.FlushInterval, fmt.Sprintf("want > 0 and at most %v, or 0 for the default", MaxFlushInterval))
	case s.MaxBatch < 0 || s.MaxBatch > maxBatch:
		return s, bad("MaxBatch", s.MaxBatch, fmt.Sprintf("want 1 to %d, or 0 for the default", maxBatch))
	case s.RefreshInterval < 0:
		return s, bad("RefreshInterval", s.RefreshInterval, "want > 0, or 0 for the default")
	case strings.ContainsAny(s.Instance, " \t\r\n"):
		return s, bad("Instance", s.Instance, "want no white space")
	}
	if s.ConsecutiveFailures == 0 {
		s.ConsecutiveFailures = DefaultConsecutiveFailures
	}
	if s.MinimumCalls == 0 {
		s.MinimumCalls = DefaultMinimumCalls
	}
	if s.Window == 0 {
		s.Window = DefaultWindow
	}
	if s.WindowBuckets == 0 {
		s.WindowBuckets = DefaultWindowBuckets
	}
	if s.Quorum == 0 {
		s.Quorum = 1
	}
	if s.OpenDuration == 0 {
		s.OpenDuration = DefaultOpenDuration
	}
	if s.MaxOpenDuration == 0 {
		s.MaxOpenDuration = s.OpenDuration
	}
	if s.MaxProbes == 0 {
		s.MaxProbes = 1
	}
	if s.ProbeSuccesses == 0 {
		s.ProbeSuccesses = 1
	}
	if s.ProbeLease == 0 {
		s.ProbeLease = DefaultProbeLease
	}
	if s.FlushInterval == 0 {
		s.FlushInterval = DefaultFlushInterval
	}
	if s.MaxBatch == 0 {
		s.MaxBatch = DefaultMaxBatch
	}
	if s.RefreshInterval == 0 {
		s.RefreshInterval = DefaultRefreshInterval
	}
	if s.Clock == nil {
		s.Clock = clock.System{}
	}
	if s.Instance == "" {
		s.Instance = defaultInstance()
	}
	switch {
	case s.ConsecutiveFailures == Off && s.FailureRate == 0 && s.SlowCallRate == 0:
		return s, bad("ConsecutiveFailures", s.ConsecutiveFailures, "want at least one trip policy; FailureRate and SlowCallRate are off too")
	case s.Window < time.Duration(s.WindowBuckets)*time.Millisecond:
		return s, bad("Window", s.Window, fmt.Sprintf("want at least 1ms per bucket (%d buckets)", s.WindowBuckets))
	case s.OpenDuration < time.Millisecond:
		return s, bad("OpenDuration", s.OpenDuration, "want at least 1ms")
	case s.MaxOpenDuration < s.OpenDuration:
		return s, bad("MaxOpenDuration", s.MaxOpenDuration, fmt.Sprintf("want >= OpenDuration (%v)", s.OpenDuration))
	case s.ProbeLease < time.Millisecond:
		return s, bad("ProbeLease", s.ProbeLease, "want at least 1ms")
	}
	return s, nil
}

// policy returns what the store needs of normalized settings.
func (s Settings) policy() backend.Policy {
	return backend.Policy{
		ConsecutiveFailures: max(s.ConsecutiveFailures, 0), // Off: 0
		FailureRate:         s.FailureRate,
		SlowCallRate:        s.SlowCallRate,
		MinimumCalls:        s.MinimumCalls,
		Window:              s.Window,
		WindowBuckets:       s.WindowBuckets,
		Quorum:              s.Quorum,
		OpenDuration:        s.OpenDuration,
		MaxOpenDuration:     s.MaxOpenDuration,
		OpenJitter:          s.OpenJitter,
		MaxProbes:           s.MaxProbes,
		ProbeSuccesses:      s.ProbeSuccesses,
		ProbeLease:          s.ProbeLease,
	}
}

func defaultInstance() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "instance"
	}
	host = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\n' || r == '\r' {
			return '-'
		}
		return r
	}, host)
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// CheckName returns an error matching ErrInvalidSettings when name cannot
// name a breaker (or another object whose keys share a hash tag built from
// its name): empty, over 512 bytes, holding braces or control characters.
func CheckName(name string) error {
	if why := validName(name); why != "" {
		return &SettingsError{Field: "name", Value: quoteName(name), Reason: why}
	}
	return nil
}

// quotedNameLimit is how many bytes of a name an error message quotes.
const quotedNameLimit = 64

// quoteName quotes name for an error message: whole when it is short, else
// its first bytes (whole runes), an ellipsis and its length, so that a
// runaway name does not flood the logs.
func quoteName(name string) string {
	if len(name) <= quotedNameLimit {
		return strconv.Quote(name)
	}
	cut := quotedNameLimit
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(name[:cut]), len(name))
}

// validName reports why name cannot name a breaker, or "" when it can.
func validName(name string) string {
	switch {
	case name == "":
		return "want a non-empty name"
	case len(name) > 512:
		return "want at most 512 bytes"
	case strings.ContainsAny(name, "{}"):
		return "want no braces: they would change the key's hash tag"
	case strings.IndexFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0:
		return "want no control characters"
	}
	return ""
}

// Validate reports the first invalid field of s as an error matching
// ErrInvalidSettings, or nil. New calls it; callers that build breakers
// later (one per host, say) may call it early.
func (s Settings) Validate() error {
	_, err := s.normalize()
	return err
}
