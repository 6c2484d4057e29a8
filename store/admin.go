package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
)

// This file is the operators' side of the store: listing breakers and
// reading their shared state without running a script, so that a reader
// never creates, renews or changes a breaker.

var (
	// ErrBadPattern is matched by List's error for a pattern it cannot use.
	ErrBadPattern = errors.New("store: bad pattern")
)

// List returns the names of the breakers whose state is kept under the
// store's prefix and that match pattern, sorted. The pattern is a Redis glob
// (* matches any run of characters, ? one, [abc] a set, \ escapes the next
// character; "" means "*"); it may not hold braces or control characters,
// which no name holds, and its brackets must close, else the error matches
// ErrBadPattern. A name may contain ':', so the names of a store whose
// prefix extends this one's ("p:team" for "p") are listed too.
//
// List walks the keyspace with SCAN, never KEYS, so that Redis keeps serving
// while it runs: on a Cluster it scans every master, on a Ring every shard.
// Breakers created or expiring while it runs may be listed or not. ctx
// bounds the whole walk, whatever the client's ReadTimeout (a Redis that
// hangs holds it until ctx is done, not longer); Options.Timeout does not
// apply.
func (s *Store) List(ctx context.Context, pattern string) ([]string, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	if pattern == "" {
		pattern = "*"
	}
	if err := checkPattern(pattern); err != nil {
		return nil, err
	}
	head := "{" + s.opts.Prefix + ":"
	tail := "}:" + layout + ":state"
	match := globEscape(head) + pattern + globEscape(tail)
	found := map[string]bool{}
	var mu sync.Mutex // ForEachMaster scans the masters concurrently
	scan := func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, match, 1000).Result()
			if err != nil {
				return err
			}
			mu.Lock()
			for _, k := range keys {
				name, ok := strings.CutPrefix(k, head)
				if !ok {
					continue
				}
				name, ok = strings.CutSuffix(name, tail)
				// A key that matches the glob but whose name could not be a
				// breaker's (a brace inside) is another program's.
				if ok && breaker.CheckName(name) == nil {
					found[name] = true
				}
			}
			mu.Unlock()
			if next == 0 {
				return nil
			}
			cursor = next
		}
	}
	// The walk returns when ctx is done, whatever the client's ReadTimeout;
	// found is then left to the abandoned walk.
	err := s.runner.bounded(ctx, func(ctx context.Context) error {
		switch c := s.client.(type) {
		case *redis.ClusterClient:
			return c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return scan(ctx, node) })
		case *redis.Ring:
			return c.ForEachShard(ctx, func(ctx context.Context, shard *redis.Client) error { return scan(ctx, shard) })
		}
		return scan(ctx, s.client)
	})
	if err != nil {
		return nil, fmt.Errorf("store: list %q: %w", pattern, classifyAdmin(err))
	}
	names := make([]string, 0, len(found))
	for n := range found {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// checkPattern rejects what no breaker name can match or Redis would read
// otherwise than meant.
func checkPattern(p string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrBadPattern, p, why) }
	if strings.ContainsAny(p, "{}") {
		return bad("want no braces (no breaker name holds one)")
	}
	if strings.IndexFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
		return bad("want no control characters")
	}
	open := false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\\':
			if i == len(p)-1 {
				return bad("a trailing \\ escapes nothing")
			}
			i++
		case c == '[' && !open:
			open = true
		case c == ']' && open:
			open = false
		}
	}
	if open {
		return bad("a [ is not closed by ]")
	}
	return nil
}

// globEscape makes s match itself in a Redis glob.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Status is a breaker's shared state as Inspect read it from Redis.
type Status struct {
	Name string
	// Exists is false when the store holds no state for the breaker (never
	// used, expired, or lost); the other fields are then zero.
	Exists     bool
	State      breaker.State
	Generation int64
	// From is the state before the last transition, Reason why it happened,
	// ChangedBy the instance whose request made it, ChangedAt when (on
	// Redis's clock) and InState how long before Now.
	From      breaker.State
	Reason    string
	ChangedBy string
	ChangedAt time.Time
	InState   time.Duration
	// NextProbeIn is how long until the next probe is let through (Open);
	// zero in the other states.
	NextProbeIn time.Duration
	// Counts as a breaker's Snapshot reports them. The window counts are
	// kept only while a rate policy is on (Windowed).
	Counts   breaker.Counts
	Windowed bool
	// Instances are the distinct instances the keys name, sorted: the one
	// that made the last transition, those that reported trouble in the
	// window (kept with a Quorum above 1) and those holding probe leases.
	Instances []string
	// Leases is how many probe leases are held and not expired.
	Leases int
	// Now is Redis's clock when the state was read.
	Now time.Time
	// Err, when set, says why the keys could not be read as a breaker: it
	// matches ErrCorrupt and names the key and the field. Reset repairs them.
	Err error
}

// InspectOptions say how to read the sliding window, whose layout the
// store does not keep: give the breakers' Settings.Window and WindowBuckets.
// The zero value means the breaker package's defaults.
type InspectOptions struct {
	Window        time.Duration
	WindowBuckets int
}

// inspectChunk bounds the breakers read in one pipeline.
const inspectChunk = 200

// Inspect reads the shared state of the named breakers, one Status per
// name in the order given, with plain reads (HMGET, HGETALL, ZRANGE, TIME
// in one pipeline): it runs no script, so it never creates a breaker,
// renews its expiry or changes it. A breaker whose keys hold foreign or
// corrupt data has Status.Err set; Inspect's own error (matching
// ErrUnavailable when Redis did not answer) means nothing could be read.
// ctx bounds the whole call, whatever the client's ReadTimeout (a Redis
// that hangs holds it until ctx is done, not longer); Options.Timeout does
// not apply.
func (s *Store) Inspect(ctx context.Context, opts InspectOptions, names ...string) ([]Status, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	if opts.Window < 0 || opts.WindowBuckets < 0 {
		return nil, fmt.Errorf("store: inspect: window %v in %d buckets: want positive values, or 0 for the defaults", opts.Window, opts.WindowBuckets)
	}
	if opts.Window == 0 {
		opts.Window = breaker.DefaultWindow
	}
	if opts.WindowBuckets == 0 {
		opts.WindowBuckets = breaker.DefaultWindowBuckets
	}
	for _, n := range names {
		if err := breaker.CheckName(n); err != nil {
			return nil, fmt.Errorf("store: inspect: %w", err)
		}
	}
	out := make([]Status, 0, len(names))
	for len(names) > 0 {
		chunk := names[:min(len(names), inspectChunk)]
		names = names[len(chunk):]
		sts, err := s.inspect(ctx, opts, chunk)
		if err != nil {
			return nil, err
		}
		out = append(out, sts...)
	}
	return out, nil
}

// rawBreaker holds the replies for one breaker's keys.
type rawBreaker struct {
	state *redis.SliceCmd
	win   *redis.MapStringStringCmd
	inst  *redis.ZSliceCmd
	lease *redis.ZSliceCmd
}

func (s *Store) inspect(ctx context.Context, opts InspectOptions, names []string) ([]Status, error) {
	pipe := s.client.Pipeline()
	clock := pipe.Time(ctx)
	raws := make([]rawBreaker, len(names))
	for i, n := range names {
		k := s.Keys(n)
		raws[i] = rawBreaker{
			state: pipe.HMGet(ctx, k[0], adminStateFields...),
			win:   pipe.HGetAll(ctx, k[1]),
			inst:  pipe.ZRangeWithScores(ctx, k[2], 0, -1),
			lease: pipe.ZRangeWithScores(ctx, k[3], 0, -1),
		}
	}
	// A command's own error (WRONGTYPE) is examined below; any other error
	// means Redis did not answer. Exec returns when ctx is done, whatever
	// the client's ReadTimeout; the replies are then left to it, unread.
	err := s.runner.bounded(ctx, func(ctx context.Context) error {
		_, err := pipe.Exec(ctx)
		return err
	})
	var rerr redis.Error
	if err != nil && !errors.As(err, &rerr) {
		return nil, fmt.Errorf("store: inspect: %w", classifyAdmin(err))
	}
	now, err := clock.Result()
	if err != nil {
		return nil, fmt.Errorf("store: inspect: TIME: %w", classifyAdmin(err))
	}
	out := make([]Status, len(names))
	for i, n := range names {
		st, err := s.parseBreaker(n, raws[i], now, opts)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return nil, fmt.Errorf("store: inspect %q: %w", n, err)
		}
		st.Err = err
		out[i] = st
	}
	return out, nil
}

// classify sorts a Redis error as the scripts' errors are sorted.
func classifyAdmin(err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		return err
	case isOutage(err):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	case isCorrupt(err):
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// adminStateFields are the fields of the state hash that Inspect reads; see
// FIELDS in lua/lib.lua. Fields the hash holds beyond these are ignored.
var adminStateFields = []string{"st", "gen", "probe_at", "trips", "from", "why", "by", "at",
	"ok", "ko", "cf", "cfat", "hs", "tok", "tko", "tslow", "tstale", "pko"}

// corrupt returns an error matching ErrCorrupt about key.
func corrupt(key, format string, args ...interface{}) error {
	return fmt.Errorf("%w: %s: %s", ErrCorrupt, key, fmt.Sprintf(format, args...))
}

// parseBreaker turns the replies for one breaker into its Status; it is the
// one place that knows the layout of the keys as read.
func (s *Store) parseBreaker(name string, raw rawBreaker, now time.Time, opts InspectOptions) (Status, error) {
	keys := s.Keys(name)
	st := Status{Name: name, Now: now}
	for i, cmd := range []redis.Cmder{raw.state, raw.win, raw.inst, raw.lease} {
		if err := cmd.Err(); err != nil {
			if isCorrupt(err) {
				return st, corrupt(keys[i], "%v", err)
			}
			return st, classifyAdmin(err)
		}
	}
	vals := raw.state.Val()
	h := make(map[string]string, len(adminStateFields))
	for i, f := range adminStateFields {
		if i >= len(vals) || vals[i] == nil {
			continue
		}
		v, ok := vals[i].(string)
		if !ok {
			return st, corrupt(keys[0], "field %s is %T, want a string", f, vals[i])
		}
		h[f] = v
	}
	if len(h) == 0 {
		return st, nil // no such breaker
	}
	st.Exists = true
	nowMS := now.UnixMilli()

	text := func(f string) string {
		v, ok := h[f]
		if !ok {
			st.Err = errors.Join(st.Err, corrupt(keys[0], "lacks field %s", f))
		}
		return v
	}
	num := func(f string, optional bool) int64 {
		v, ok := h[f]
		if !ok {
			if !optional {
				st.Err = errors.Join(st.Err, corrupt(keys[0], "lacks field %s", f))
			}
			return 0
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n >= maxGeneration {
			st.Err = errors.Join(st.Err, corrupt(keys[0], "field %s is %q, want an integer in [0, 2^53)", f, v))
			return 0
		}
		return n
	}
	count := func(f string) uint64 {
		n := num(f, true)
		if n < 0 {
			st.Err = errors.Join(st.Err, corrupt(keys[0], "field %s is %d, want a count >= 0", f, n))
			return 0
		}
		return uint64(n)
	}
	state := func(f string) breaker.State {
		_, present := h[f]
		v := text(f)
		b, ok := states[v]
		if !ok && present {
			st.Err = errors.Join(st.Err, corrupt(keys[0], "field %s is %q, want a state", f, v))
		}
		return breaker.State(b)
	}

	st.State = state("st")
	st.Generation = num("gen", false)
	if _, present := h["gen"]; present && st.Generation == 0 && st.Err == nil {
		st.Err = corrupt(keys[0], "field gen is %q, want a positive integer", h["gen"])
	}
	if st.Generation >= maxGen && st.Err == nil {
		st.Err = corrupt(keys[0], "field gen is %d, want below 2^52", st.Generation)
	}
	st.From = state("from")
	st.Reason = text("why")
	st.ChangedBy = text("by")
	at := num("at", false)
	st.ChangedAt = time.UnixMilli(at)
	st.InState = time.Duration(max(0, nowMS-at)) * time.Millisecond
	probeAt := num("probe_at", false)
	if st.State == breaker.Open {
		st.NextProbeIn = time.Duration(max(0, probeAt-nowMS)) * time.Millisecond
	}
	c := &st.Counts
	c.Trips = count("trips")
	c.Successes = count("ok")
	c.Failures = count("ko")
	c.ConsecutiveFailures = count("cf")
	c.ProbeSuccesses = count("hs")
	c.TotalSuccesses = count("tok")
	c.TotalFailures = count("tko")
	c.TotalSlowCalls = count("tslow")
	c.TotalStale = count("tstale")
	c.PreviousFailures = count("pko")
	_ = num("cfat", true) // read, not shown: checked alike
	if st.Err != nil {
		return st, st.Err
	}

	// The window: bucket k holds index i<k> (time / width) and counts t<k>,
	// f<k>, s<k>; it is in the window while i > now/width - buckets.
	win := raw.win.Val()
	st.Windowed = len(win) > 0
	width := max(1, opts.Window.Milliseconds()/int64(opts.WindowBuckets))
	idx := nowMS / width
	for k := 0; k < opts.WindowBuckets; k++ {
		b := [4]int64{}
		for j, f := range [4]string{"i", "t", "f", "s"} {
			v, ok := win[f+strconv.Itoa(k)]
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || n >= maxGeneration {
				return st, corrupt(keys[1], "field %s%d is %q, want an integer in [0, 2^53)", f, k, v)
			}
			b[j] = n
		}
		if b[0] > idx-int64(opts.WindowBuckets) && b[0] <= idx {
			c.WindowCalls += uint64(b[1])
			c.WindowFailures += uint64(b[2])
			c.WindowSlowCalls += uint64(b[3])
		}
	}

	seen := map[string]bool{}
	if st.ChangedBy != "" {
		seen[st.ChangedBy] = true
	}
	for _, z := range raw.inst.Val() {
		id, _ := z.Member.(string)
		// A time beyond now and the window would count the instance as
		// troubled for ever; the scripts refuse it alike (lua/lib.lua).
		if !(z.Score <= float64(nowMS+opts.Window.Milliseconds())) { // also NaN
			return st, corrupt(keys[2], "member %s has time %v, beyond now and the window", id, z.Score)
		}
		seen[id] = true
		if int64(z.Score) >= nowMS-opts.Window.Milliseconds() {
			c.TroubledInstances++
		}
	}
	for _, z := range raw.lease.Val() {
		id, _ := z.Member.(string)
		// The lease time is not known here: only an expiry that is no time
		// at all is told (the scripts also refuse one beyond the lease).
		if !(z.Score < maxGeneration) { // also NaN
			return st, corrupt(keys[3], "member %s expires at %v, want a time in ms", id, z.Score)
		}
		if int64(z.Score) <= nowMS {
			continue // expired: the next script drops it
		}
		st.Leases++
		// Lease ids are "<instance>#<n>".
		if i := strings.LastIndexByte(id, '#'); i > 0 {
			id = id[:i]
		}
		seen[id] = true
	}
	delete(seen, "")
	for id := range seen {
		st.Instances = append(st.Instances, id)
	}
	sort.Strings(st.Instances)
	return st, nil
}

// Announcement is what Follow passes on: an announced transition, or news
// of the subscription itself.
type Announcement struct {
	// Name and Generation of an announced transition. Announcements are
	// hints: read the state (Inspect) rather than trust them.
	Name       string
	Generation int64
	// Subscribed is set when the subscription started or started again;
	// after a restart, announcements made meanwhile were missed.
	Subscribed bool
	// Err is set when the subscription broke; Follow re-establishes it.
	Err error
}

// Follow subscribes to the store's channel and calls fn with every
// announcement, on one goroutine, until ctx is done; it then returns nil.
// When the connection breaks, fn hears the error once, and Subscribed once
// the subscription is back. Messages that do not parse are dropped.
func (s *Store) Follow(ctx context.Context, fn func(Announcement)) error {
	if s.isClosed() {
		return ErrClosed
	}
	ps := s.client.Subscribe(ctx, s.channel)
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() }) // unblocks Receive
	defer stop()
	backoff, lost := 50*time.Millisecond, false
	for {
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if !lost {
				lost = true
				fn(Announcement{Err: fmt.Errorf("store: subscription to %s: %w", s.channel, classifyAdmin(err))})
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				lost = false
				fn(Announcement{Subscribed: true})
			}
		case *redis.Message:
			if gen, name, ok := parseAnnouncement(m.Payload); ok {
				fn(Announcement{Name: name, Generation: gen})
			}
		}
	}
}
