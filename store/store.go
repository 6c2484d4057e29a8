package store

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/breaker/backend"
	"github.com/breakwater-go/breakwater/lua"
)

var (
	// ErrUnavailable is matched by errors of a Redis that cannot be reached,
	// is too slow, or is not serving (loading, cluster down), and by the fast
	// failures of the cooldown that follows.
	ErrUnavailable = errors.New("store: redis unavailable")
	// ErrCorrupt is matched by errors of keys that hold data this layout
	// does not know (another program's, or damaged). breaker.Breaker.Reset
	// repairs them.
	ErrCorrupt = errors.New("store: foreign or corrupt data in redis")
	// ErrProtocol is matched by errors of a reply of an unexpected shape.
	ErrProtocol = errors.New("store: unexpected reply from redis")
	// ErrClosed is returned by every call of a Store after Close.
	ErrClosed = errors.New("store: closed")
)

// Options configure a Store. The zero value of every field means its default.
type Options struct {
	// Prefix namespaces the keys and the channel, e.g. one per service
	// (default "breakwater"). It may not contain braces.
	Prefix string
	// Timeout bounds every Redis call (default 250ms). A go-redis client
	// without ContextTimeoutEnabled does not bound its socket reads by a
	// call's context, so the store then runs each call on a goroutine of
	// its own to keep this bound; enable it to save that cost.
	Timeout time.Duration
	// Cooldown is how long the store fails fast after Redis failed to
	// answer, before it lets one call try again (default 1s).
	Cooldown time.Duration
	// IdleExpiry removes a breaker's keys when no instance has used it for
	// this long (default 24h). It must exceed the longest call a breaker
	// protects.
	IdleExpiry time.Duration
	// Logger, when set, logs the loss of the store's subscription (Warn)
	// and its return (Info) (default: silent).
	Logger *slog.Logger
}

// Defaults of Options.
const (
	DefaultPrefix     = "breakwater"
	DefaultTimeout    = 250 * time.Millisecond
	DefaultCooldown   = time.Second
	DefaultIdleExpiry = 24 * time.Hour
)

// layout is the key layout version, part of every key and of the channel.
const layout = "v1"

// Store is a breaker.Store on Redis. Make it with New; it is safe for
// concurrent use and meant to be shared by all breakers of a process.
type Store struct {
	client  redis.UniversalClient
	opts    Options
	channel string
	runner  runner

	acquire, record, fast, force, read *redis.Script

	mu       sync.Mutex
	watchers map[string]map[int]func(int64, *backend.Reply)
	settlers map[string]map[int]func(int64) // WatchSettle's, by breaker name
	renewed  sync.Map                       // breaker name -> when a report last asked to renew its keys' expiry
	// announceKeys: watched breaker name -> its announcement key (lib.lua's
	// field sk), as the last reply or read gave it; guarded by mu.
	announceKeys map[string]string
	macs         map[string]hash.Hash // keyed HMACs, by key: the subscription's own (see signed)
	macBuf       []byte               // the subscription's own (see signed)
	nextID       int
	subStop      context.CancelFunc
	subDone      chan struct{}
	pubsub       *redis.PubSub
	closed       bool
}

var (
	_ breaker.Store   = (*Store)(nil)
	_ backend.Settler = (*Store)(nil)
)

// New returns a store keeping breakers in the Redis that client reaches.
// The store does not own client: Close leaves it open.
func New(client redis.UniversalClient, opts Options) (*Store, error) {
	if err := checkClient("New", client); err != nil {
		return nil, err
	}
	switch {
	case strings.ContainsAny(opts.Prefix, "{} \t\r\n"):
		return nil, fmt.Errorf("store: Prefix %q: want no braces or white space", opts.Prefix)
	case opts.Timeout < 0:
		return nil, fmt.Errorf("store: Timeout %v: want > 0, or 0 for the default", opts.Timeout)
	case opts.Cooldown < 0:
		return nil, fmt.Errorf("store: Cooldown %v: want > 0, or 0 for the default", opts.Cooldown)
	case opts.IdleExpiry < 0 || opts.IdleExpiry > 0 && opts.IdleExpiry < time.Second:
		return nil, fmt.Errorf("store: IdleExpiry %v: want at least 1s, or 0 for the default", opts.IdleExpiry)
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Cooldown == 0 {
		opts.Cooldown = DefaultCooldown
	}
	if opts.IdleExpiry == 0 {
		opts.IdleExpiry = DefaultIdleExpiry
	}
	return &Store{
		client:       client,
		opts:         opts,
		channel:      opts.Prefix + ":" + layout + ":events",
		runner:       newRunner(client, opts.Timeout, opts.Cooldown, time.Now),
		acquire:      redis.NewScript(lua.Acquire()),
		record:       redis.NewScript(lua.Record()),
		fast:         redis.NewScript(lua.Fast()),
		force:        redis.NewScript(lua.Force()),
		read:         redis.NewScript(lua.Read()),
		watchers:     map[string]map[int]func(int64, *backend.Reply){},
		settlers:     map[string]map[int]func(int64){},
		announceKeys: map[string]string{},
		macs:         map[string]hash.Hash{},
	}, nil
}

// Channel returns the pub/sub channel on which the store's transitions are announced.
func (s *Store) Channel() string { return s.channel }

// Keys returns the Redis keys of the named breaker: state, window,
// troubled instances and probe leases.
func (s *Store) Keys(name string) []string {
	tag := "{" + s.opts.Prefix + ":" + name + "}:" + layout + ":"
	return []string{tag + "state", tag + "win", tag + "inst", tag + "lease"}
}

// Acquire implements backend.Store.
func (s *Store) Acquire(ctx context.Context, req backend.Request) (backend.Reply, error) {
	return s.run(ctx, "acquire", s.acquire, req, req.Lease)
}

// Record implements backend.Store. The common report (see fastArgs) goes
// to the fast script first, and to the full one when the fast one does not
// count it.
func (s *Store) Record(ctx context.Context, req backend.Request) (backend.Reply, error) {
	if err := s.usable(req); err != nil {
		return backend.Reply{}, err
	}
	renew := s.renewDue(req.Name)
	if args, ok := fastArgs(req, renew); ok {
		// Whatever the fast script does not count, the full one answers:
		// its verdict, or the error that names the cause. When Redis could
		// not be asked, the report fails as the full script's would.
		res, err := s.runner.run(ctx, s.fast, s.Keys(req.Name)[:1], args)
		if err == nil && res == int64(1) {
			return shortReply(req), nil
		}
		if unasked(err) {
			return backend.Reply{}, fmt.Errorf("breaker %q: record: %w", req.Name, err)
		}
	}
	return s.call(ctx, "record", s.record, req, s.recordArgs(req, renew)...)
}

// fastArgs returns the arguments of the fast script (lua/fast.lua) for req,
// or false when its report needs the full script: the fast script counts a
// batch of successes only, admitted under the generation the instance
// knows, with no probe lease to release, for a breaker whose policy has no
// rate and no quorum (they need the window and the troubled instances), when
// no renewal of the keys' expiry is due.
func fastArgs(req backend.Request, renew bool) ([]interface{}, bool) {
	b, st := req.Batch, req.Policy
	if st == nil {
		st = &defaultPolicy
	}
	if renew || req.Lease != "" || req.Known <= 0 || req.Generation != req.Known || req.Seq <= 0 ||
		b.Failures != 0 || b.Slow != 0 || b.Lead != 0 || b.Trail != 0 || b.Run != 0 ||
		b.Successes == 0 || b.Successes >= maxGeneration ||
		st.FailureRate != 0 || st.SlowCallRate != 0 || st.Quorum > 1 {
		return nil, false
	}
	return []interface{}{req.Instance, req.Known, b.Successes, req.Seq}, true
}

// unasked reports whether err says that Redis could not be asked (an
// outage, a denial, a closed store, the caller's context): a second
// script would fare no better.
func unasked(err error) bool {
	return err != nil && (errors.Is(err, ErrUnavailable) || errors.Is(err, ErrDenied) || errors.Is(err, ErrClosed) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}

// shortReply is the reply to a report the fast script counted: the breaker
// is closed at the generation the instance knows, which holds the rest.
func shortReply(req backend.Request) backend.Reply {
	return backend.Reply{Verdict: backend.VerdictCounted, State: backend.Closed, Generation: req.Known, Short: true}
}

// renewDue reports whether the keys of the named breaker should have their
// idle expiry renewed by this report: once per eighth of it per process.
func (s *Store) renewDue(name string) bool {
	now := time.Now()
	if last, ok := s.renewed.Load(name); ok && now.Sub(last.(time.Time)) < s.opts.IdleExpiry/8 {
		return false
	}
	s.renewed.Store(name, now)
	return true
}

// recordArgs returns the record script's own arguments (ARGV[20] on) for
// req; renew asks it to renew the keys' idle expiry.
func (s *Store) recordArgs(req backend.Request, renew bool) []interface{} {
	b := req.Batch
	gen := req.Generation
	if gen < 0 {
		gen = 0
	}
	seq := req.Seq
	if seq < 0 {
		seq = 0
	}
	us := func(d time.Duration) int64 { return int64(max(0, d) / time.Microsecond) }
	r := 0
	if renew {
		r = 1
	}
	okAge, koAge := b.Ages(time.Now())
	return []interface{}{gen, req.Lease, seq, b.Successes, b.Failures, b.Slow, b.Lead, b.Trail, b.Run,
		us(okAge), us(koAge), us(b.Settle), max(0, req.SettledThrough.UnixMicro()), r}
}

var commands = map[backend.Command]string{
	backend.CommandOpen: "open", backend.CommandClose: "close",
	backend.CommandDisable: "disable", backend.CommandReset: "reset",
}

// Force implements backend.Store.
func (s *Store) Force(ctx context.Context, req backend.Request) (backend.Reply, error) {
	c, ok := commands[req.Command]
	if !ok {
		return backend.Reply{}, fmt.Errorf("store: breaker %q: unknown command %d", req.Name, req.Command)
	}
	if req.OpenFor < 0 {
		return backend.Reply{}, fmt.Errorf("store: breaker %q: open for %v: want >= 0", req.Name, req.OpenFor)
	}
	return s.run(ctx, "force", s.force, req, c, ms(req.OpenFor))
}

func ms(d time.Duration) int64 { return int64(d / time.Millisecond) }

// args returns the ARGV every script shares (lib.lua), then extra.
func (s *Store) args(req backend.Request, extra ...interface{}) []interface{} {
	st := req.Policy
	if st == nil {
		st = &defaultPolicy
	}
	consecutive := st.ConsecutiveFailures
	if consecutive < 0 {
		consecutive = 0
	}
	random := req.Random
	if random <= 0 || random >= 1 || random != random {
		random = rand.Float64()
	}
	known := req.Known
	if known < 0 {
		known = 0
	}
	a := make([]interface{}, 0, 19+len(extra))
	a = append(a, s.channel, req.Name, req.Instance, ms(s.opts.IdleExpiry),
		consecutive, st.FailureRate, st.SlowCallRate, st.MinimumCalls,
		ms(st.Window), st.WindowBuckets, st.Quorum, st.ProbeSuccesses, st.MaxProbes,
		ms(st.ProbeLease), ms(st.OpenDuration), ms(st.MaxOpenDuration), st.OpenJitter, random, known)
	return append(a, extra...)
}

// defaultPolicy is the policy of a request that carries none.
var defaultPolicy = backend.Policy{
	ConsecutiveFailures: breaker.DefaultConsecutiveFailures, MinimumCalls: breaker.DefaultMinimumCalls,
	Window: breaker.DefaultWindow, WindowBuckets: breaker.DefaultWindowBuckets, Quorum: 1,
	OpenDuration: breaker.DefaultOpenDuration, MaxOpenDuration: breaker.DefaultOpenDuration,
	MaxProbes: 1, ProbeSuccesses: 1, ProbeLease: breaker.DefaultProbeLease,
}

func (s *Store) run(ctx context.Context, op string, script *redis.Script, req backend.Request, extra ...interface{}) (backend.Reply, error) {
	if err := s.usable(req); err != nil {
		return backend.Reply{}, err
	}
	return s.call(ctx, op, script, req, extra...)
}

// call runs script for a usable req and parses its reply.
func (s *Store) call(ctx context.Context, op string, script *redis.Script, req backend.Request, extra ...interface{}) (backend.Reply, error) {
	res, err := s.runner.run(ctx, script, s.Keys(req.Name), s.args(req, extra...))
	if err == nil {
		var rep backend.Reply
		if rep, err = parseReply(res); err == nil {
			err = s.checkSeq(req, rep)
		}
		if err == nil {
			s.learn(req.Name, replyKey(res))
			return rep, nil
		}
	}
	return backend.Reply{}, fmt.Errorf("breaker %q: %s: %w", req.Name, op, s.nameWrongType(req.Name, err))
}

// maxSeq bounds the sequences an instance may send: its clock in µs, until
// the year 2200.
var maxSeq = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()

// checkSeq returns an error matching ErrCorrupt when rep says req's batch
// is a duplicate of a sequence beyond any clock: the instance could not go
// on above it, and every report of it would be dropped.
func (s *Store) checkSeq(req backend.Request, rep backend.Reply) error {
	if rep.Verdict != backend.VerdictDuplicate || rep.LastSeq <= maxSeq {
		return nil
	}
	return corrupt(s.Keys(req.Name)[0], "field q.%s is %d, a sequence beyond any clock (µs)", req.Instance, rep.LastSeq)
}

// usable checks that the store is open and the request names a breaker.
func (s *Store) usable(req backend.Request) error {
	if s.isClosed() {
		return ErrClosed
	}
	if err := breaker.CheckName(req.Name); err != nil {
		return err
	}
	return nil
}

var states = map[string]backend.State{
	"closed": backend.Closed, "open": backend.Open, "half_open": backend.HalfOpen,
	"forced_open": backend.ForcedOpen, "disabled": backend.Disabled,
}

var verdicts = map[string]backend.Verdict{}

func init() {
	for _, v := range []backend.Verdict{backend.VerdictAllow, backend.VerdictProbe, backend.VerdictReject,
		backend.VerdictCounted, backend.VerdictStale, backend.VerdictDuplicate, backend.VerdictOK} {
		verdicts[string(v)] = v
	}
}

// replyLen is the number of fields of a script reply (lib.lua).
const replyLen = 25

// parseReply checks every field of a script's reply.
func parseReply(res interface{}) (backend.Reply, error) {
	a, ok := res.([]interface{})
	if !ok || len(a) < replyLen {
		return backend.Reply{}, fmt.Errorf("%w: got %T of %d fields, want an array of %d", ErrProtocol, res, lenOf(res), replyLen)
	}
	return parseFields(&parser{a: a})
}

// parseFields reads a script's reply from p's fields (see parseReply).
func parseFields(p *parser) (backend.Reply, error) {
	var r backend.Reply
	r.Verdict = p.verdict(0)
	r.State = p.state(1)
	r.Generation = p.int(2)
	r.Wait = msDuration(p.int(3))
	r.From = p.state(4)
	r.Reason = p.str(5)
	r.By = p.str(6)
	r.InState = msDuration(p.int(7))
	c := &r.Counts
	c.Successes = p.uint(8)
	c.Failures = p.uint(9)
	c.ConsecutiveFailures = p.uint(10)
	c.ProbeSuccesses = p.uint(11)
	c.WindowCalls = p.uint(12)
	c.WindowFailures = p.uint(13)
	c.WindowSlowCalls = p.uint(14)
	c.TroubledInstances = p.uint(15)
	c.TotalSuccesses = p.uint(16)
	c.TotalFailures = p.uint(17)
	c.TotalSlowCalls = p.uint(18)
	c.TotalStale = p.uint(19)
	r.Lease = p.str(20)
	r.Changed = p.int(21) == 1
	c.Trips = p.uint(22)
	c.PreviousFailures = p.uint(23)
	r.ServerTime = time.UnixMilli(p.int(24))
	n := p.len()
	if n > replyLen {
		r.ServerTime = time.UnixMicro(p.int(25))
	}
	if n > replyLen+2 {
		r.LastSeq = p.int(replyLen + 2) // a duplicate's (record.lua)
	}
	if n > replyLen+3 {
		r.Settling = p.int(replyLen+3) == 1 // record.lua asked the instances to report
	}
	if p.err != nil {
		return backend.Reply{}, p.err
	}
	return r, nil
}

// replyKey returns field 27 of a script's reply, the breaker's
// announcement key, or nil.
func replyKey(res interface{}) interface{} {
	if a, ok := res.([]interface{}); ok && len(a) > replyLen+1 {
		return a[replyLen+1]
	}
	return nil
}

func lenOf(v interface{}) int {
	if a, ok := v.([]interface{}); ok {
		return len(a)
	}
	return 0
}

// parser reads the fields of a reply (a), or of an announcement, which are
// text (s, when a is nil).
type parser struct {
	a   []interface{}
	s   []string
	err error
}

// len returns how many fields there are.
func (p *parser) len() int {
	if p.a == nil {
		return len(p.s)
	}
	return len(p.a)
}

// field returns field i.
func (p *parser) field(i int) interface{} {
	if p.a == nil {
		return p.s[i]
	}
	return p.a[i]
}

func (p *parser) fail(i int, want string) {
	if p.err == nil {
		v := p.field(i)
		p.err = fmt.Errorf("%w: field %d is %T %v, want %s", ErrProtocol, i+1, v, v, want)
	}
}

func (p *parser) str(i int) string {
	if p.a == nil {
		return p.s[i]
	}
	s, ok := p.a[i].(string)
	if !ok {
		p.fail(i, "a string")
	}
	return s
}

func (p *parser) int(i int) int64 {
	var text string
	if p.a == nil {
		text = p.s[i]
	} else {
		switch v := p.a[i].(type) {
		case int64:
			return v
		case string: // some proxies turn integers into strings
			text = v
		}
	}
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		return n
	}
	p.fail(i, "an integer")
	return 0
}

func (p *parser) uint(i int) uint64 {
	n := p.int(i)
	if n < 0 {
		p.fail(i, "a count >= 0")
		return 0
	}
	return uint64(n)
}

func (p *parser) state(i int) backend.State {
	st, ok := states[p.str(i)]
	if !ok {
		p.fail(i, "a state")
	}
	return st
}

func (p *parser) verdict(i int) backend.Verdict {
	v, ok := verdicts[p.str(i)]
	if !ok {
		p.fail(i, "a verdict")
	}
	return v
}
