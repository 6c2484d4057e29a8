package backend

import (
	"context"
	"time"
)

// Store keeps the shared state of breakers. Package store implements it on
// Redis; every method that changes state does so atomically, in one step.
// A Store is used by many breakers at once, and must be safe for concurrent
// use.
type Store interface {
	// Acquire asks whether a call may run now and grants a probe lease
	// (Request.Lease) when the breaker is half-open.
	Acquire(ctx context.Context, req Request) (Reply, error)
	// Record counts Request.Batch, admitted under Request.Generation, at
	// most once per (Request.Instance, Request.Seq), and releases
	// Request.Lease.
	Record(ctx context.Context, req Request) (Reply, error)
	// Force carries out Request.Command for the whole fleet.
	Force(ctx context.Context, req Request) (Reply, error)
	// Read returns the breaker's shared state without changing anything; a
	// breaker the store does not hold reads as closed, generation 0. The
	// window and troubled instances are read only when Request.Full is set.
	Read(ctx context.Context, req Request) (Reply, error)
	// Do carries out ops (OpRecord and OpRead only), in one round trip
	// where the store can, and sets each op's Reply or Err. Ops of one
	// breaker are carried out in their order.
	Do(ctx context.Context, ops []Op)
	// Watch calls notify with the generation of every transition of the
	// named breaker that is announced, and with 0 and nil whenever
	// announcements may have been missed (after a new subscription), until
	// cancel is called. When the store has verified that an announcement
	// comes from the breaker's own script it passes the state announced
	// (verified, a reply with VerdictOK), which the breaker takes as it
	// takes a reply; otherwise verified is nil and the announcement is only
	// a hint to read the state. notify must not block.
	Watch(name string, notify func(generation int64, verified *Reply)) (cancel func())
}

// Settler is implemented by a Store that can ask every instance of a
// breaker to report the outcomes it holds at once: when the failures of
// several instances make a run long enough to trip once it has settled (a
// success one of them has not reported yet may still split it). The Record
// whose batch made the run answers with Reply.Settling set. A breaker whose
// Store implements Settler reports at once when asked, and when its own
// batch made the run, looks again a short while later instead of a
// settling time later (Batch.Settle).
type Settler interface {
	// WatchSettle calls settle with the breaker's generation each time the
	// store asks the instances of the named breaker to report at once, and
	// has verified that the call comes from the breaker's own script, until
	// cancel is called. settle must not block.
	WatchSettle(name string, settle func(generation int64)) (cancel func())
}

// OpKind names what an Op asks of a Store.
type OpKind int

const (
	// OpRecord is a Record.
	OpRecord OpKind = iota + 1
	// OpRead is a Read.
	OpRead
)

// Op is one request of a Store.Do call and its answer.
type Op struct {
	Kind    OpKind  // what is asked: OpRecord or OpRead
	Request Request // the request, as for Record or Read
	Reply   Reply   // set by Do: the answer, when Err is nil
	Err     error   // set by Do: why the op failed
}

// Request is what a breaker asks of its Store.
type Request struct {
	Name     string  // the breaker's name (breaker.CheckName accepts it)
	Instance string  // the asking instance
	Policy   *Policy // nil: the defaults of breaker.Settings
	// Known is the generation the instance knows (0 when none). A store
	// whose generation is below it went back in time (restored, failed
	// over to a lagging replica) and moves its generation past Known.
	Known      int64
	Lease      string // Acquire: the lease id to grant; Record: the lease to release
	Generation int64  // Record: the generation Batch was admitted under (0: unknown)
	// Seq orders an instance's Records (0: none). The store applies each
	// (Instance, Seq) at most once, and none at or below a Seq it applied.
	// It is at least the instance's clock in µs since the Unix epoch: the
	// store forgets an instance whose last Seq is older than the keys'
	// idle expiry (an hour at least).
	Seq     int64
	Batch   Batch   // Record: the outcomes
	Command Command // Force
	// OpenFor is how long CommandOpen opens the breaker, as a trip would
	// (0: until closed).
	OpenFor time.Duration
	Random  float64 // a number in [0, 1) for the open duration's jitter
	// SettledThrough is the store's time (see Reply.ServerTime) through
	// which this instance's failures have settled (Batch.Settle): they
	// count towards a trip now (zero: none).
	SettledThrough time.Time
	Full           bool // Read: read the window and troubled instances too
}

// Command is an operator's command for the whole fleet.
type Command int

const (
	// CommandOpen holds the breaker open.
	CommandOpen Command = iota + 1
	// CommandClose closes the breaker.
	CommandClose
	// CommandDisable lets every call through.
	CommandDisable
	// CommandReset clears all counts and closes the breaker.
	CommandReset
)

// Verdict is a store's answer to a request.
type Verdict string

// Verdicts. Acquire answers VerdictAllow, VerdictProbe or VerdictReject;
// Record answers VerdictCounted, VerdictStale (the batch's generation
// ended) or VerdictDuplicate (this Seq was applied before); Force and Read
// answer VerdictOK.
const (
	VerdictAllow     Verdict = "allow"
	VerdictProbe     Verdict = "probe"
	VerdictReject    Verdict = "reject"
	VerdictCounted   Verdict = "counted"
	VerdictStale     Verdict = "stale"
	VerdictDuplicate Verdict = "duplicate"
	VerdictOK        Verdict = "ok"
)

// Reply is the shared state of a breaker as a store saw it while answering.
type Reply struct {
	Verdict    Verdict // the answer to the request
	State      State   // the breaker's state
	Generation int64   // the state's generation: each transition starts a new one
	// Wait is how long until a call may be admitted: until the next probe
	// when open, until a probe lease expires when a half-open breaker
	// rejects; negative when forced open.
	Wait    time.Duration
	From    State         // the state before the last transition
	Reason  string        // why the last transition happened
	By      string        // the instance whose request made it
	InState time.Duration // time since the last transition
	Lease   string        // the lease granted (VerdictProbe)
	// LastSeq is, with VerdictDuplicate, the last Seq the store applied for
	// the instance (0: not told).
	LastSeq int64
	Changed bool // this request made a transition
	// Settling is set on a Record's answer when the store asked every
	// instance to report what it holds at once (see Settler).
	Settling bool
	// Short is set on a store's short answer to a Record: the breaker is
	// closed at the generation the request knew, and From, Reason, By,
	// InState and Counts are not given (the asking instance knows them).
	Short  bool
	Counts Counts // the fleet-wide counts (none when Short)
	// ServerTime is the store's clock when it answered (Redis's, to the
	// millisecond); zero when the store does not tell.
	ServerTime time.Time
}
