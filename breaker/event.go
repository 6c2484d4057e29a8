package breaker

import "time"

// EventKind tells what an Event reports.
type EventKind int

const (
	// StateChanged: the shared state changed, by this instance or another;
	// or, with Decider DecideLocal, the local breaker that decides while
	// the store is unreachable changed.
	StateChanged EventKind = iota
	// StoreUnavailable: the store could not be reached; the breaker now
	// decides locally as Fallback says. From is the shared state as this
	// instance last saw it, To the state that decides now (Breaker.State).
	StoreUnavailable
	// StoreRecovered: the store answers again; the breaker follows the
	// shared state again. From is the state that decided while the store
	// was away, To the shared state as this instance last saw it.
	StoreRecovered
)

var eventKindNames = [...]string{"state-changed", "store-unavailable", "store-recovered"}

// String returns the kind's name.
func (k EventKind) String() string {
	if k < 0 || int(k) >= len(eventKindNames) {
		return "EventKind(?)"
	}
	return eventKindNames[k]
}

// Event is what a breaker tells its listeners. Every instance's listeners
// hear every transition of the shared state once, whichever instance caused
// it. An instance that missed announcements (cut off from the store) hears
// only the last transition it missed. When the store lost the breaker (its
// keys expired, or Redis restarted empty), the breaker starts anew, closed,
// and From is the state this instance last saw (Reason "created").
//
// While the store is unreachable and FallbackLocal decides, the local
// breaker's transitions are events too: Kind StateChanged, Decider
// DecideLocal, Instance this one, Generation 0 (they are not the shared
// state's), and Reason as for the shared state's. The local breaker follows
// this instance's outcomes at all times, but its transitions are events
// only while it decides; StoreUnavailable's To says where it stands then.
type Event struct {
	Kind       EventKind
	Name       string
	From, To   State
	Generation int64
	// Reason is why the transition happened: "consecutive_failures",
	// "failure_rate", "slow_call_rate", "open_timeout", "probe_failed",
	// "probes_succeeded", "forced_open", "forced_close", "disabled", "reset".
	Reason string
	Counts Counts
	// NextProbeIn is how long until the next probe, when To is Open.
	NextProbeIn time.Duration
	// Instance caused the transition; Local is set when that is this one.
	Instance string
	Local    bool
	// Err is the store's error (StoreUnavailable).
	Err error
	// Fallback is how the breaker decides while the store is away.
	Fallback Fallback
	// Decider is what decides the breaker's calls once the event happened
	// (Breaker.Decider): DecideShared for the shared state's transitions
	// and StoreRecovered; DecideLocal for the local breaker's transitions;
	// the fallback's Decider for StoreUnavailable.
	Decider Decider
	// Unreported is how many outcomes this instance held, undelivered,
	// when the store answered again (StoreRecovered); they are delivered
	// now, each counted exactly once.
	Unreported uint64
}
