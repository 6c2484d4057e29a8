package store_test

// Corrupt data, against a real redis-server: every field of the state hash,
// the window buckets, the probe leases' and troubled instances' scores and
// every key's type, each given values that no script writes (1e30, NaN,
// ±inf, negative, fractional, 2^53+1, empty, not a number, ...). Each is an
// error matching ErrCorrupt that names the key and the field, on every path
// that reads it (the scripts, the plain read, Inspect), or is read
// correctly; the breaker falls back and tells why; Reset repairs it, after
// which the breaker trips as usual and the fleet hears it.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/breaker/backend"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

// The keys of a breaker, in the order of Store.Keys.
const (
	keyState = iota
	keyWindow
	keyTroubled
	keyLeases
)

// corruptCase is one kind of corrupt data.
type corruptCase struct {
	name string
	key  int // which key holds it
	// what the errors must say besides the key ("field gen ", "member m "),
	// or "" for a key of the wrong type.
	what string
	// write puts the data in place; now is Redis's clock in ms.
	write func(ctx context.Context, c *redis.Client, key string, now int64) error
	// settings turn on the policy under which the scripts read the key.
	settings func(*breaker.Settings)
	// halfOpen: the breaker is half-open when the data goes bad (probe
	// leases are read then).
	halfOpen bool
	// ok: the value is read correctly (no error anywhere); check, when
	// set, says what correct is.
	ok    bool
	check func(t *testing.T, in *faultInstance)
	// Which paths read the data and must report it: Snapshot (the read
	// script), store.Read without Full (HMGET), Inspect. The breaker's
	// own path (a report, or an Acquire while half-open) always does.
	snapshot, read, inspect bool
}

// badNumbers are values no script writes where an integer belongs.
var badNumbers = []struct{ label, value string }{
	{"1e30", "1e30"},
	{"NaN", "NaN"},
	{"inf", "inf"},
	{"-inf", "-inf"},
	{"negative", "-1"},
	{"fractional", "1.5"},
	{"2^53+1", "9007199254740993"},
	{"empty", ""},
	{"not a number", "abc"},
	{"exponent", "1e3"},
	{"hexadecimal", "0x10"},
	{"padded", " 7"},
}

// The fields of the state hash (see lua/lib.lua), and which of them the
// plain read (store/read.go) and Inspect (store/admin.go) read.
var (
	numberFields  = []string{"gen", "fl", "probe_at", "trips", "at", "ok", "ko", "cf", "cfat", "hs", "tok", "tko", "tslow", "tstale", "pko", "ren"}
	plainRead     = set("st", "gen", "probe_at", "from", "why", "by", "at", "ok", "ko", "cf", "hs", "tok", "tko", "tslow", "tstale", "trips", "pko")
	inspectedRead = set("st", "gen", "probe_at", "trips", "from", "why", "by", "at", "ok", "ko", "cf", "cfat", "hs", "tok", "tko", "tslow", "tstale", "pko")
)

func set(xs ...string) map[string]bool {
	m := map[string]bool{}
	for _, x := range xs {
		m[x] = true
	}
	return m
}

func hset(field, value string) func(context.Context, *redis.Client, string, int64) error {
	return func(ctx context.Context, c *redis.Client, key string, _ int64) error {
		return c.HSet(ctx, key, field, value).Err()
	}
}

// zadd adds member with the score score(now), given as Redis reads it.
func zadd(member string, score func(now int64) string) func(context.Context, *redis.Client, string, int64) error {
	return func(ctx context.Context, c *redis.Client, key string, now int64) error {
		return c.Do(ctx, "ZADD", key, score(now), member).Err()
	}
}

func fixed(s string) func(int64) string { return func(int64) string { return s } }

// wrongType replaces the key with one of another type.
func wrongType(typ string) func(context.Context, *redis.Client, string, int64) error {
	return func(ctx context.Context, c *redis.Client, key string, _ int64) error {
		_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, key)
			switch typ {
			case "string":
				p.Set(ctx, key, "hello", 0)
			case "list":
				p.RPush(ctx, key, "x")
			case "set":
				p.SAdd(ctx, key, "x")
			case "zset":
				p.ZAdd(ctx, key, redis.Z{Score: 1, Member: "x"})
			case "hash":
				p.HSet(ctx, key, "x", "1")
			}
			return nil
		})
		return err
	}
}

func rates(s *breaker.Settings)  { s.FailureRate, s.MinimumCalls = 0.5, 1000 }
func quorum(s *breaker.Settings) { s.Quorum = 2 }

// Settings of the breakers of the test: ProbeLease and Window bound the
// leases' and troubled instances' scores.
const (
	corruptLease  = 30 * time.Second
	corruptWindow = time.Minute
)

func corruptCases() []corruptCase {
	var cs []corruptCase
	all := func(c corruptCase) corruptCase { c.snapshot, c.read, c.inspect = true, true, true; return c }

	// The state hash: numbers.
	for _, f := range numberFields {
		for _, v := range badNumbers {
			cs = append(cs, corruptCase{name: "state " + f + " " + v.label, key: keyState, what: "field " + f + " ",
				write: hset(f, v.value), snapshot: true, read: plainRead[f], inspect: inspectedRead[f]})
		}
	}
	cs = append(cs,
		all(corruptCase{name: "state gen 0", key: keyState, what: "field gen ", write: hset("gen", "0")}),
		// A generation is Redis's clock in ms plus one per transition: one
		// of 2^52 or more is corrupt, not one to adopt (an instance that
		// knew it would then be held off by it after Reset).
		// Another program's hash at the state key: foreign data, which
		// no script writes into (the plain read and Inspect see no
		// breaker there).
		corruptCase{name: "state key holds a foreign hash", key: keyState, what: "holds no breaker", snapshot: true,
			write: func(ctx context.Context, c *redis.Client, key string, _ int64) error {
				if err := c.Del(ctx, key).Err(); err != nil {
					return err
				}
				return c.HSet(ctx, key, "user", "bob", "email", "bob@example.com").Err()
			}},
		// A count at the top of the range stays there: a report must not
		// write what the next read calls corrupt.
		corruptCase{name: "state tko 2^53-1", key: keyState, write: hset("tko", strconv.FormatInt(1<<53-1, 10)), ok: true,
			check: readsAfterReport},
		all(corruptCase{name: "state gen 2^52", key: keyState, what: "field gen ", write: hset("gen", strconv.FormatInt(1<<52, 10))}),
		all(corruptCase{name: "state gen 2^53-1", key: keyState, what: "field gen ", write: hset("gen", strconv.FormatInt(1<<53-1, 10))}),
		corruptCase{name: "state fl 0 (absent)", key: keyState, write: hset("fl", "0"), ok: true},
		corruptCase{name: "state probe_at 2^53-1 while open", key: keyState, ok: true,
			write: func(ctx context.Context, c *redis.Client, key string, _ int64) error {
				return c.HSet(ctx, key, "st", "open", "probe_at", strconv.FormatInt(1<<53-1, 10)).Err()
			},
			check: func(t *testing.T, in *faultInstance) {
				// Open for some 285,000 years: a wait that time.Duration
				// cannot hold is its largest, never negative.
				snap, err := in.b.Snapshot(context.Background())
				if err != nil || snap.State != breaker.Open || snap.NextProbeIn != math.MaxInt64 {
					t.Errorf("Snapshot: state %v, next probe in %v, error %v; want open for centuries", snap.State, snap.NextProbeIn, err)
				}
				_, err = in.b.Allow(context.Background())
				var oe *breaker.OpenError
				if !errors.As(err, &oe) || oe.NextProbeIn < 200*365*24*time.Hour {
					t.Errorf("Allow: got %v, want an *OpenError with the next probe centuries away", err)
				}
			}},
		corruptCase{name: "state at 2^53-1", key: keyState, write: hset("at", strconv.FormatInt(1<<53-1, 10)), ok: true},
	)
	// The state hash: states and text.
	for _, f := range []string{"st", "from"} {
		for _, v := range []string{"", "exploded", "OPEN", "1e30"} {
			cs = append(cs, all(corruptCase{name: fmt.Sprintf("state %s %q", f, v), key: keyState, what: "field " + f + " ", write: hset(f, v)}))
		}
	}
	for _, f := range []string{"why", "by", "ri", "fk", "sk"} {
		for _, v := range []string{"", "*", "1e30", "ünï cödé ☃"} {
			cs = append(cs, corruptCase{name: fmt.Sprintf("state %s %q", f, v), key: keyState, write: hset(f, v), ok: true})
		}
	}
	// The current run of failures: "time:count" entries, read by every
	// script (and by no plain read).
	for _, v := range []string{"abc", "1e30:1", "1:1e30", "-1:1", "1.5:1", "1:9007199254740993",
		"9007199254740993:1", "1:", ":1", "1:2 x", "1:2;3:4", "inf:1", "1:NaN"} {
		cs = append(cs, corruptCase{name: fmt.Sprintf("state rl %q", v), key: keyState, what: "field rl ", write: hset("rl", v), snapshot: true})
	}
	for _, v := range []string{"", "1:1", "1795000000000000:1 1795000000000001:2"} {
		cs = append(cs, corruptCase{name: fmt.Sprintf("state rl %q", v), key: keyState, write: hset("rl", v), ok: true})
	}
	// The last sequence applied for an instance: only a report reads it.
	for _, v := range badNumbers {
		cs = append(cs, corruptCase{name: "state q.victim " + v.label, key: keyState, what: "field q.victim ", write: hset("q.victim", v.value)})
	}
	// Window buckets, read under a rate policy.
	for _, f := range []string{"i0", "t0", "f0", "s0"} {
		for _, v := range badNumbers {
			cs = append(cs, corruptCase{name: "window " + f + " " + v.label, key: keyWindow, what: "field " + f + " ",
				write: hset(f, v.value), settings: rates, snapshot: true, inspect: true})
		}
	}
	// Probe leases, read while half-open: an expiry beyond the lease time
	// is corrupt (Inspect, which does not know the lease time, tells only
	// those that are no time at all); one in the past has expired.
	lease := corruptLease.Milliseconds()
	for _, s := range []struct {
		label   string
		score   func(int64) string
		inspect bool
	}{
		{"+inf", fixed("+inf"), true},
		{"1e30", fixed("1e30"), true},
		{"2^53+1", fixed("9007199254740993"), true},
		{"beyond the lease", func(now int64) string { return strconv.FormatInt(now+10*lease, 10) }, false},
	} {
		cs = append(cs, corruptCase{name: "lease score " + s.label, key: keyLeases, what: "member victim#9 ",
			write: zadd("victim#9", s.score), halfOpen: true, snapshot: true, inspect: s.inspect})
	}
	for _, s := range []string{"-inf", "-1", "1.5"} {
		cs = append(cs, corruptCase{name: "lease score " + s + " (expired)", key: keyLeases, write: zadd("victim#9", fixed(s)), halfOpen: true, ok: true})
	}
	// Troubled instances, read under a quorum: a time beyond now and the
	// window would count an instance as troubled for ever.
	window := corruptWindow.Milliseconds()
	for _, s := range []struct {
		label string
		score func(int64) string
	}{
		{"+inf", fixed("+inf")},
		{"1e30", fixed("1e30")},
		{"2^53+1", fixed("9007199254740993")},
		{"beyond the window", func(now int64) string { return strconv.FormatInt(now+10*window, 10) }},
	} {
		cs = append(cs, corruptCase{name: "troubled score " + s.label, key: keyTroubled, what: "member ghost ",
			write: zadd("ghost", s.score), settings: quorum, snapshot: true, inspect: true})
	}
	for _, s := range []string{"-inf", "-1", "1.5"} {
		cs = append(cs, corruptCase{name: "troubled score " + s + " (old)", key: keyTroubled, write: zadd("ghost", fixed(s)), settings: quorum, ok: true})
	}
	// Keys of the wrong type.
	for _, typ := range []string{"string", "list", "set", "zset"} {
		cs = append(cs, all(corruptCase{name: "state key a " + typ, key: keyState, write: wrongType(typ)}))
	}
	for _, typ := range []string{"string", "zset"} {
		cs = append(cs, corruptCase{name: "window key a " + typ, key: keyWindow, write: wrongType(typ), settings: rates, snapshot: true, inspect: true})
	}
	for _, typ := range []string{"string", "hash"} {
		cs = append(cs, corruptCase{name: "troubled key a " + typ, key: keyTroubled, write: wrongType(typ), settings: quorum, snapshot: true, inspect: true})
	}
	for _, typ := range []string{"string", "hash", "list"} {
		cs = append(cs, corruptCase{name: "lease key a " + typ, key: keyLeases, write: wrongType(typ), halfOpen: true, snapshot: true, inspect: true})
	}
	return cs
}

func TestCorruptData(t *testing.T) {
	srv := redistest.Start(t)
	raw := srv.Client(t)
	o := store.Options{Prefix: "corrupt", Timeout: 5 * time.Second}
	// Two instances, as two processes would be: the victim, whose calls
	// meet the corrupt data, and a witness that must hear its trip.
	victims := faultStore(t, srv.Client(t), o)
	witnesses := faultStore(t, srv.Client(t), o)
	for i, tc := range corruptCases() {
		tc := tc
		name := fmt.Sprintf("c%03d", i)
		t.Run(tc.name, func(t *testing.T) {
			testCorrupt(t, raw, victims, witnesses, name, tc)
		})
	}
}

func testCorrupt(t *testing.T, raw *redis.Client, victims, witnesses *store.Store, name string, tc corruptCase) {
	ctx := context.Background()
	s := breaker.Settings{ConsecutiveFailures: 2, OpenDuration: time.Hour, ProbeLease: corruptLease,
		Window: corruptWindow, RefreshInterval: time.Hour}
	if tc.settings != nil {
		tc.settings(&s)
	}
	vs, ws := s, s
	vs.Instance, ws.Instance = "victim", "witness"
	victim := faultAttach(t, victims, name, vs)
	witness := faultAttach(t, witnesses, name, ws)
	keys := victims.Keys(name)
	key := keys[tc.key]
	if _, err := victim.b.Snapshot(ctx); err != nil {
		t.Fatalf("Snapshot of a new breaker: %v", err)
	}
	if _, err := witness.b.Snapshot(ctx); err != nil {
		t.Fatalf("Snapshot of a new breaker: %v", err)
	}
	if tc.halfOpen {
		if err := raw.HSet(ctx, keys[keyState], "st", "half_open").Err(); err != nil {
			t.Fatal(err)
		}
		if snap, err := victim.b.Snapshot(ctx); err != nil || snap.State != breaker.HalfOpen {
			t.Fatalf("Snapshot: %v %v, want half-open", snap.State, err)
		}
	}
	now, err := raw.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.write(ctx, raw, key, now.UnixMilli()); err != nil {
		t.Fatalf("writing the corrupt data: %v", err)
	}

	// want checks the error of one path.
	want := func(path string, reports bool, err error) {
		t.Helper()
		switch {
		case !reports || tc.ok:
			if err != nil {
				t.Errorf("%s: got %v, want no error", path, err)
			}
		case !errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrUnavailable) || !mentions(err, key, tc.what):
			t.Errorf("%s: got %v, want an error matching store.ErrCorrupt (only) that names %s and %q", path, err, key, tc.what)
		}
	}
	_, err = victim.b.Snapshot(ctx)
	want("Snapshot", tc.snapshot, err)
	_, err = victims.Read(ctx, backend.Request{Name: name, Instance: "reader"})
	want("plain read", tc.read, err)
	sts, err := victims.Inspect(ctx, store.InspectOptions{Window: corruptWindow}, name)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	want("Inspect", tc.inspect, sts[0].Err)

	// The breaker's own path: a report (or, half-open, an Acquire).
	if p, err := victim.b.Allow(ctx); err == nil {
		p.Done(ctx, errFault)
	} else if !tc.ok {
		var oe *breaker.OpenError
		if !errors.As(err, &oe) || !oe.Local {
			t.Errorf("Allow: got %v, want a permit or the local fallback's rejection", err)
		}
	}
	if tc.ok {
		flush(t, victim.b)
		for _, e := range victim.drain() {
			if e.Kind == breaker.StoreUnavailable {
				t.Errorf("store-unavailable event (%v) on data that reads correctly", e.Err)
			}
		}
		if tc.check != nil {
			tc.check(t, victim)
		}
	} else {
		e := victim.await(t, "store-unavailable", kindIs(breaker.StoreUnavailable))
		want("store-unavailable event", true, e.Err)
	}

	// Reset repairs it; then the breaker works and trips as usual, and the
	// fleet hears it.
	if err := victim.b.Reset(ctx); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if !tc.ok {
		victim.await(t, "store-recovered", kindIs(breaker.StoreRecovered))
	}
	snap, err := victim.b.Snapshot(ctx)
	if err != nil || snap.State != breaker.Closed || snap.Reason != "reset" {
		t.Fatalf("after Reset: Snapshot %v %q, %v; want closed by reset", snap.State, snap.Reason, err)
	}
	if _, err := victims.Read(ctx, backend.Request{Name: name, Instance: "reader"}); err != nil {
		t.Errorf("after Reset: plain read: %v", err)
	}
	if sts, err := victims.Inspect(ctx, store.InspectOptions{Window: corruptWindow}, name); err != nil || sts[0].Err != nil {
		t.Errorf("after Reset: Inspect: %v %v", err, sts[0].Err)
	}
	// The witness learns the new generation (its reports must carry it
	// to count); what either heard before is done with.
	if _, err := witness.b.Snapshot(ctx); err != nil {
		t.Fatalf("after Reset: witness's Snapshot: %v", err)
	}
	victim.drain()
	witness.drain()
	fail(t, victim.b, s.ConsecutiveFailures)
	if s.Quorum > 1 {
		fail(t, witness.b, 1)
	}
	for _, in := range []*faultInstance{victim, witness} {
		e := in.await(t, "state-changed to open", changedTo(breaker.Open))
		if e.Reason != "consecutive_failures" {
			t.Errorf("%s: opened for %q, want consecutive_failures", in.b.Instance(), e.Reason)
		}
	}
}

// A hash of another program at a breaker's state key is left as it is:
// the breaker's report fails with an error naming it, and no field or
// expiry is added.
func TestAForeignHashIsLeftAlone(t *testing.T) {
	srv := redistest.Start(t)
	raw := srv.Client(t)
	ctx := context.Background()
	st := faultStore(t, srv.Client(t), store.Options{Prefix: "foreign", Timeout: 5 * time.Second})
	key := st.Keys("users")[keyState]
	if err := raw.HSet(ctx, key, "user", "bob", "email", "bob@example.com").Err(); err != nil {
		t.Fatal(err)
	}
	in := faultAttach(t, st, "users", breaker.Settings{Instance: "victim"})
	if p, err := in.b.Allow(ctx); err == nil {
		p.Done(ctx, errFault)
	}
	e := in.await(t, "store-unavailable", kindIs(breaker.StoreUnavailable))
	if !errors.Is(e.Err, store.ErrCorrupt) || !mentions(e.Err, key, "holds no breaker") {
		t.Errorf("store-unavailable with %v, want store.ErrCorrupt naming %s", e.Err, key)
	}
	h, err := raw.HGetAll(ctx, key).Result()
	if err != nil || len(h) != 2 || h["user"] != "bob" {
		t.Errorf("the foreign hash is now %v (%v), want it as it was", h, err)
	}
	if ttl, err := raw.PTTL(ctx, key).Result(); err != nil || ttl != -1 {
		t.Errorf("the foreign hash's expiry is %v (%v), want none", ttl, err)
	}
}

// readsAfterReport checks that the state reads correctly after the
// victim's report.
func readsAfterReport(t *testing.T, in *faultInstance) {
	t.Helper()
	if _, err := in.b.Snapshot(context.Background()); err != nil {
		t.Errorf("Snapshot after a report: %v", err)
	}
}
