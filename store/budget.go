package store

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/clock"
	"github.com/breakwater-go/breakwater/lua"
)

// BudgetOptions configure a RetryBudget. The zero value of every field means
// its default: a fleet may retry 20% of its requests plus 10 retries a
// second, over a 10 s window.
type BudgetOptions struct {
	// Prefix namespaces the budget's key (default "breakwater"). It may not
	// contain braces or white space.
	Prefix string
	// Ratio is how many retries the fleet may make per request it starts
	// (0 < Ratio <= 1000; default 0.2).
	Ratio float64
	// Floor is how many retries per second the fleet may make whatever its
	// traffic, so that a fleet with few requests can still retry some
	// (default 10; NoFloor for none).
	Floor float64
	// Window is the sliding window over which requests and retries are
	// counted (default 10 s). It is used as a whole number of buckets of a
	// whole number of milliseconds each.
	Window time.Duration
	// Buckets is how many buckets the window slides by (1 to 1000; default 10).
	Buckets int
	// Batch is how many retries an instance claims from Redis at once; it
	// uses them before it asks again (default 5). Larger batches cost fewer
	// round trips in a retry storm; each instance may hold up to Batch-1
	// claimed retries it never makes.
	Batch int
	// FlushInterval is how often an instance sends the requests it counted
	// to Redis when no claim has carried them (default 1 s).
	FlushInterval time.Duration
	// Timeout bounds every Redis call (default 250ms).
	Timeout time.Duration
	// Cooldown is how long the budget decides locally after Redis failed to
	// answer, before it lets one call try again (default 1 s).
	Cooldown time.Duration
	// Clock is the local clock: it measures the local window, the cooldown,
	// and the flush interval (default: the system clock).
	Clock Clock
}

// NoFloor, as BudgetOptions.Floor, allows no retries beyond Ratio × requests.
const NoFloor = -1

// Defaults of BudgetOptions.
const (
	DefaultBudgetRatio         = 0.2
	DefaultBudgetFloor         = 10
	DefaultBudgetWindow        = 10 * time.Second
	DefaultBudgetBuckets       = 10
	DefaultBudgetBatch         = 5
	DefaultBudgetFlushInterval = time.Second
)

// Clock is a RetryBudget's local clock: the one clock type of every
// Breakwater package (package clock).
type Clock = clock.Clock

// RetryBudget is a retry budget shared by a fleet: over a sliding window,
// the fleet's retries may be at most Ratio × its requests + Floor × the
// window's seconds, counted in Redis across all instances, so that a fleet
// cannot multiply its own load in a retry storm. It implements the Budget
// interface of package retry (OnRequest, AllowRetry).
//
// Counting costs no round trip per request: OnRequest only counts locally.
// The counts travel with the next claim of retries and, when no claim
// comes, with a periodic flush (every FlushInterval). AllowRetry claims
// retries from Redis in batches of up to Batch and uses them locally while
// they last; after Redis refused, it asks again only once this instance has
// counted enough new requests to earn a retry, or once the window has slid.
//
// While Redis cannot be reached (or holds foreign data), an instance decides
// alone, and fails toward allowing a bounded local ratio: it allows a retry
// while its own retries in the local window stay within Ratio × its own
// requests in that window (no Floor: the floor is the fleet's, and an
// instance cannot know its share of it). Those retries and the requests
// counted meanwhile are sent to Redis once it answers again. A failed call
// is retried after Cooldown, so a dead Redis costs one Timeout per Cooldown.
//
// Make a RetryBudget with Store.RetryBudget (or NewRetryBudget); it is safe
// for concurrent use.
// Close stops its flushes.
type RetryBudget struct {
	client redis.UniversalClient
	name   string
	key    string
	opts   BudgetOptions
	clock  Clock
	real   bool // clock is the system clock
	width  time.Duration
	ttl    time.Duration
	script *redis.Script
	runner runner

	mu           sync.Mutex
	pending      int64         // requests not yet sent to Redis
	spent        int64         // retries made locally, not yet sent to Redis
	tokens       int64         // granted retries not yet used
	tokensAt     time.Time     // when the tokens were granted
	refusedUntil time.Time     // Redis refused: ask again after this, or when pending earns a retry
	busy         chan struct{} // closed when the Redis call in flight ends; nil when none
	local        localWindow
	stats        BudgetStats
	closed       bool

	stop chan struct{}
	done chan struct{}
}

// BudgetStats are an instance's counts of its use of a RetryBudget.
type BudgetStats struct {
	// Requests is how many times OnRequest was called.
	Requests uint64
	// Retries is how many retries AllowRetry allowed; LocalRetries how many
	// of them were allowed by the local fallback while Redis was unreachable.
	Retries, LocalRetries uint64
	// Refused is how many retries AllowRetry refused.
	Refused uint64
	// Calls is how many calls to Redis (claims and flushes) were answered.
	Calls uint64
	// Tokens is how many claimed retries the instance holds unused.
	Tokens int64
	// Pending is how many requests have not been sent to Redis yet.
	Pending int64
	// Err is the error of the last call to Redis; nil when it succeeded.
	Err error
}

// BudgetUsage is a retry budget's current window as Redis counts it, for
// the whole fleet.
type BudgetUsage struct {
	// Requests and Retries counted in the window.
	Requests, Retries int64
	// Limit is how many retries the window allows: floor(Ratio × Requests
	// + Floor × the window's seconds).
	Limit int64
	// NextSlide is how long until the window next slides.
	NextSlide time.Duration
}

// RetryBudget returns the retry budget called name on the store's Redis,
// shared by every instance that uses the same name and prefix. Zero
// Prefix, Timeout and Cooldown in opts take the store's (Options.Prefix,
// Timeout, Cooldown), so that the budget lives beside the store's breakers
// and fails the same way; the other fields mean what they mean for
// NewRetryBudget. The budget has its own Close, which the store's does not
// call: close the budget first.
func (s *Store) RetryBudget(name string, opts BudgetOptions) (*RetryBudget, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	if opts.Prefix == "" {
		opts.Prefix = s.opts.Prefix
	}
	if opts.Timeout == 0 {
		opts.Timeout = s.opts.Timeout
	}
	if opts.Cooldown == 0 {
		opts.Cooldown = s.opts.Cooldown
	}
	return NewRetryBudget(s.client, name, opts)
}

// NewRetryBudget returns the retry budget called name, shared by every
// instance that uses the same name and prefix on the Redis that client
// reaches. Store.RetryBudget makes one from a Store, with the store's
// prefix, timeout and cooldown; NewRetryBudget is for a budget without
// breakers, or on another Redis. The budget does not own client: Close leaves it open. It returns
// an error naming the option when opts or name is invalid. NewRetryBudget
// does no I/O; it starts the periodic flush, which Close stops.
func NewRetryBudget(client redis.UniversalClient, name string, opts BudgetOptions) (*RetryBudget, error) {
	if err := checkClient("NewRetryBudget", client); err != nil {
		return nil, err
	}
	if err := breaker.CheckName(name); err != nil {
		return nil, fmt.Errorf("store: retry budget: %w", err)
	}
	opts, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	b := &RetryBudget{
		client: client,
		name:   name,
		key:    "{" + opts.Prefix + ":retry:" + name + "}:" + layout + ":win",
		opts:   opts,
		clock:  opts.Clock,
		width:  opts.Window / time.Duration(opts.Buckets),
		script: redis.NewScript(lua.Budget()),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if b.clock == nil {
		b.clock, b.real = clock.System{}, true
	}
	b.runner = newRunner(client, opts.Timeout, opts.Cooldown, b.clock.Now)
	b.width = b.width.Truncate(time.Millisecond)
	b.ttl = max(2*b.width*time.Duration(opts.Buckets), time.Second)
	b.local = newLocalWindow(b.clock.Now(), b.width, opts.Buckets)
	go b.flushLoop()
	return b, nil
}

func (o BudgetOptions) resolve() (BudgetOptions, error) {
	bad := func(field string, value any, want string) (BudgetOptions, error) {
		return o, fmt.Errorf("store: BudgetOptions.%s %v: want %s", field, value, want)
	}
	switch {
	case strings.ContainsAny(o.Prefix, "{} \t\r\n"):
		return bad("Prefix", fmt.Sprintf("%q", o.Prefix), "no braces or white space")
	case math.IsNaN(o.Ratio) || o.Ratio < 0 || o.Ratio > 1000:
		return bad("Ratio", o.Ratio, "0 < Ratio <= 1000, or 0 for the default")
	case math.IsNaN(o.Floor) || math.IsInf(o.Floor, 0) || o.Floor < 0 && o.Floor != NoFloor:
		return bad("Floor", o.Floor, "a finite Floor > 0, 0 for the default, or NoFloor")
	case o.Window < 0:
		return bad("Window", o.Window, "> 0, or 0 for the default")
	case o.Buckets < 0 || o.Buckets > 1000:
		return bad("Buckets", o.Buckets, "1 to 1000, or 0 for the default")
	case o.Batch < 0:
		return bad("Batch", o.Batch, ">= 1, or 0 for the default")
	case o.FlushInterval < 0:
		return bad("FlushInterval", o.FlushInterval, "> 0, or 0 for the default")
	case o.Timeout < 0:
		return bad("Timeout", o.Timeout, "> 0, or 0 for the default")
	case o.Cooldown < 0:
		return bad("Cooldown", o.Cooldown, "> 0, or 0 for the default")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Ratio == 0 {
		o.Ratio = DefaultBudgetRatio
	}
	switch o.Floor {
	case 0:
		o.Floor = DefaultBudgetFloor
	case NoFloor:
		o.Floor = 0
	}
	if o.Window == 0 {
		o.Window = DefaultBudgetWindow
	}
	if o.Buckets == 0 {
		o.Buckets = DefaultBudgetBuckets
	}
	if o.Batch == 0 {
		o.Batch = DefaultBudgetBatch
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = DefaultBudgetFlushInterval
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Cooldown == 0 {
		o.Cooldown = DefaultCooldown
	}
	switch {
	case o.Window < time.Duration(o.Buckets)*time.Millisecond:
		return bad("Window", o.Window, fmt.Sprintf("at least 1ms per bucket (%d buckets)", o.Buckets))
	case o.FlushInterval < time.Millisecond:
		return bad("FlushInterval", o.FlushInterval, "at least 1ms")
	}
	return o, nil
}

// Name returns the budget's name.
func (b *RetryBudget) Name() string { return b.name }

// Key returns the budget's Redis key.
func (b *RetryBudget) Key() string { return b.key }

// OnRequest counts a request (an operation's first attempt). It does no
// I/O: the count is sent with the next claim or flush.
func (b *RetryBudget) OnRequest() {
	now := b.clock.Now()
	b.mu.Lock()
	b.pending++
	b.stats.Requests++
	b.local.add(now, 1, 0)
	b.mu.Unlock()
}

// AllowRetry reports whether one more retry may be made now. It uses a
// retry claimed earlier when this instance holds one; otherwise it claims a
// batch from Redis (one round trip, which also carries the requests counted
// since the last one), unless Redis refused recently and nothing has changed
// since. While Redis is unreachable it decides locally (see RetryBudget).
// It reports false when ctx ends first.
func (b *RetryBudget) AllowRetry(ctx context.Context) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		now := b.clock.Now()
		if b.tokens > 0 && now.Sub(b.tokensAt) >= b.width {
			// Claimed retries belong to the bucket they were granted in;
			// old ones are dropped rather than spent in a later window.
			b.tokens = 0
		}
		switch {
		case b.tokens > 0:
			b.tokens--
			b.retried(now)
			return true
		case b.closed:
			return b.allowLocally(now)
		case b.busy != nil:
			if !b.wait(ctx) {
				b.stats.Refused++
				return false
			}
			continue
		case now.Before(b.refusedUntil) && float64(b.pending)*b.opts.Ratio < 1:
			b.stats.Refused++
			return false
		}
		rep, err := b.call(ctx, int64(b.opts.Batch))
		if err != nil {
			if ctx.Err() != nil {
				b.stats.Refused++
				return false
			}
			return b.allowLocally(now)
		}
		if rep.granted < int64(b.opts.Batch) {
			// The window is used up: once these retries are, refuse
			// until it slides or this instance earns another.
			b.refusedUntil = now.Add(rep.slide)
		}
		if rep.granted == 0 {
			b.stats.Refused++
			return false
		}
		b.tokens += rep.granted
		b.tokensAt = now
	}
}

// retried counts a retry allowed. b.mu is held.
func (b *RetryBudget) retried(now time.Time) {
	b.stats.Retries++
	b.local.add(now, 0, 1)
}

// allowLocally decides without Redis: this instance's retries in the local
// window may be at most Ratio × its requests there. b.mu is held.
func (b *RetryBudget) allowLocally(now time.Time) bool {
	requests, retries := b.local.sums(now)
	if float64(retries+1) > b.opts.Ratio*float64(requests)+1e-9 {
		b.stats.Refused++
		return false
	}
	b.spent++
	b.stats.LocalRetries++
	b.retried(now)
	return true
}

// wait waits for the Redis call in flight to end; false when ctx ended
// first. b.mu is held on entry and on return.
func (b *RetryBudget) wait(ctx context.Context) bool {
	ch := b.busy
	b.mu.Unlock()
	defer b.mu.Lock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// budgetReply is the budget script's reply.
type budgetReply struct {
	granted, requests, retries, limit int64
	slide                             time.Duration
}

// call sends the pending counts to Redis and asks for want retries. b.mu is
// held on entry and on return, and no call may be in flight; it is released
// during the call, which others wait for. The counts of a failed call are
// kept to be sent again: when the call failed after Redis ran the script
// (a timeout), they are counted twice, which errs toward more requests, and
// so more retries, by at most one call's worth.
func (b *RetryBudget) call(ctx context.Context, want int64) (budgetReply, error) {
	requests, spent := b.pending, b.spent
	b.pending, b.spent = 0, 0
	busy := make(chan struct{})
	b.busy = busy
	b.mu.Unlock()
	rep, err := b.run(ctx, requests, want, spent)
	b.mu.Lock()
	b.busy = nil
	close(busy)
	b.stats.Err = err
	if err != nil {
		b.pending += requests
		b.spent += spent
		return rep, err
	}
	b.stats.Calls++
	if rep.limit > rep.retries {
		b.refusedUntil = time.Time{}
	}
	return rep, nil
}

func (b *RetryBudget) run(ctx context.Context, requests, want, spent int64) (budgetReply, error) {
	res, err := b.runner.run(ctx, b.script, []string{b.key}, []interface{}{
		ms(b.width) * int64(b.opts.Buckets), b.opts.Buckets, b.opts.Ratio, b.opts.Floor,
		requests, want, spent, ms(b.ttl)})
	if err == nil {
		var rep budgetReply
		if rep, err = parseBudgetReply(res); err == nil {
			return rep, nil
		}
	}
	return budgetReply{}, wrapf(err, "store: retry budget %q", b.name)
}

// maxReplyMillis bounds the waits a reply may give (a year): a larger
// one is foreign data, and would overflow a time.Duration.
const maxReplyMillis = 365 * 24 * 3600 * 1000

func parseBudgetReply(res interface{}) (budgetReply, error) {
	a, ok := res.([]interface{})
	if !ok || len(a) != 5 {
		return budgetReply{}, fmt.Errorf("%w: got %T of %d fields, want an array of 5", ErrProtocol, res, lenOf(res))
	}
	p := parser{a: a}
	rep := budgetReply{
		granted:  int64(p.uint(0)),
		requests: int64(p.uint(1)),
		retries:  int64(p.uint(2)),
		limit:    int64(p.uint(3)),
	}
	slide := p.uint(4)
	if p.err == nil && slide > maxReplyMillis {
		p.fail(4, "a wait of at most a year, in ms")
	}
	rep.slide = time.Duration(slide) * time.Millisecond
	return rep, p.err
}

// Flush sends the requests (and locally allowed retries) counted since the
// last call to Redis, waiting for a call in flight to end first. The
// periodic flush does this every FlushInterval.
func (b *RetryBudget) Flush(ctx context.Context) error {
	_, err := b.Usage(ctx)
	return err
}

// Usage sends the pending counts, as Flush does, and returns the fleet's
// window as Redis counts it.
func (b *RetryBudget) Usage(ctx context.Context) (BudgetUsage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.busy != nil {
		if !b.wait(ctx) {
			return BudgetUsage{}, fmt.Errorf("store: retry budget %q: %w", b.name, ctx.Err())
		}
	}
	rep, err := b.call(ctx, 0)
	if err != nil {
		return BudgetUsage{}, err
	}
	return BudgetUsage{Requests: rep.requests, Retries: rep.retries, Limit: rep.limit, NextSlide: rep.slide}, nil
}

// Stats returns this instance's counts.
func (b *RetryBudget) Stats() BudgetStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.stats
	s.Tokens = b.tokens
	s.Pending = b.pending
	return s
}

func (b *RetryBudget) flushLoop() {
	defer close(b.done)
	for {
		var fired <-chan time.Time
		var timer *time.Timer
		if b.real {
			timer = time.NewTimer(b.opts.FlushInterval)
			fired = timer.C
		} else {
			fired = b.clock.After(b.opts.FlushInterval)
		}
		select {
		case <-fired:
		case <-b.stop:
			if timer != nil {
				timer.Stop()
			}
			return
		}
		b.mu.Lock()
		if b.busy == nil && (b.pending > 0 || b.spent > 0) {
			_, _ = b.call(context.Background(), 0)
		}
		b.mu.Unlock()
	}
}

// Close stops the periodic flush and sends what is still pending (bounded
// by Timeout), returning that call's error. Later calls of AllowRetry decide
// locally, as while Redis is unreachable. Close does not close the client.
func (b *RetryBudget) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.tokens = 0
	b.mu.Unlock()
	close(b.stop)
	<-b.done
	defer b.runner.close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.busy != nil {
		b.wait(context.Background())
	}
	if b.pending == 0 && b.spent == 0 {
		return nil
	}
	_, err := b.call(context.Background(), 0)
	return err
}

// localWindow counts this instance's requests and retries over a sliding
// window of buckets on the local clock, for deciding while Redis is away.
type localWindow struct {
	start   time.Time
	width   time.Duration
	buckets []localBucket
}

type localBucket struct{ idx, requests, retries int64 }

// noBucket is the index of a bucket never used.
const noBucket = math.MinInt64 / 2

func newLocalWindow(start time.Time, width time.Duration, n int) localWindow {
	w := localWindow{start: start, width: width, buckets: make([]localBucket, n)}
	for i := range w.buckets {
		w.buckets[i].idx = noBucket
	}
	return w
}

func (w *localWindow) index(now time.Time) int64 {
	d := now.Sub(w.start)
	if d < 0 {
		d = 0
	}
	return int64(d / w.width)
}

func (w *localWindow) add(now time.Time, requests, retries int64) {
	idx := w.index(now)
	b := &w.buckets[idx%int64(len(w.buckets))]
	if b.idx != idx {
		*b = localBucket{idx: idx}
	}
	b.requests += requests
	b.retries += retries
}

func (w *localWindow) sums(now time.Time) (requests, retries int64) {
	idx := w.index(now)
	n := int64(len(w.buckets))
	for _, b := range w.buckets {
		if b.idx > idx-n && b.idx <= idx {
			requests += b.requests
			retries += b.retries
		}
	}
	return requests, retries
}
