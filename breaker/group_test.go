package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/store"
)

// group returns a group on a fresh store of e, with e's clock.
func (e *mini) group(opts breaker.GroupOptions) *breaker.Group {
	e.t.Helper()
	if opts.Settings.Clock == nil {
		opts.Settings.Clock = e.clock
	}
	g, err := breaker.NewGroup(e.store(), opts)
	if err != nil {
		e.t.Fatalf("NewGroup: %v", err)
	}
	e.t.Cleanup(func() { g.Close() })
	return g
}

func mustBreaker(t *testing.T, g *breaker.Group, key string) *breaker.Breaker {
	t.Helper()
	b, err := g.Breaker(key)
	if err != nil {
		t.Fatalf("Breaker(%q): %v", key, err)
	}
	return b
}

func TestGroupMakesOneBreakerPerKey(t *testing.T) {
	e := newMini(t)
	var made []string
	g := e.group(breaker.GroupOptions{OnBreaker: func(b *breaker.Breaker) { made = append(made, b.Name()) }})
	a1, b1, a2 := mustBreaker(t, g, "tenant-a"), mustBreaker(t, g, "tenant-b"), mustBreaker(t, g, "tenant-a")
	if a1 != a2 {
		t.Error("two calls for one key gave two breakers")
	}
	if a1 == b1 || a1.Name() != "tenant-a" || b1.Name() != "tenant-b" {
		t.Errorf("breakers: got %q and %q, want one per key named after it", a1.Name(), b1.Name())
	}
	if got := strings.Join(made, ","); got != "tenant-a,tenant-b" {
		t.Errorf("OnBreaker called with %q, want tenant-a,tenant-b", got)
	}
	if n := g.Len(); n != 2 {
		t.Errorf("Len: got %d, want 2", n)
	}
}

func TestGroupSettingsPerKey(t *testing.T) {
	e := newMini(t)
	var asked []string
	g := e.group(breaker.GroupOptions{
		Settings: breaker.Settings{ConsecutiveFailures: 3},
		SettingsFor: func(key string, shared breaker.Settings) breaker.Settings {
			asked = append(asked, key)
			if key == "fragile" {
				shared.ConsecutiveFailures = 1
			}
			return shared
		},
	})
	ctx := context.Background()
	fail := func(context.Context) (int, error) { return 0, errBoom }
	for _, key := range []string{"fragile", "sturdy"} {
		if _, err := breaker.ExecuteIn(ctx, g, key, fail); err != errBoom {
			t.Fatalf("%s: got %v, want errBoom", key, err)
		}
	}
	if got := mustBreaker(t, g, "fragile").State(); got != breaker.Open {
		t.Errorf("fragile after 1 failure: got %v, want open (its own threshold of 1)", got)
	}
	if got := mustBreaker(t, g, "sturdy").State(); got != breaker.Closed {
		t.Errorf("sturdy after 1 failure: got %v, want closed (the shared threshold of 3)", got)
	}
	if got := strings.Join(asked, ","); got != "fragile,sturdy" {
		t.Errorf("SettingsFor asked for %q, want each key once", got)
	}
}

func TestGroupBoundsLiveBreakers(t *testing.T) {
	e := newMini(t)
	g := e.group(breaker.GroupOptions{MaxBreakers: 3})
	ctx := context.Background()
	a := mustBreaker(t, g, "a")
	for _, k := range []string{"b", "c", "a", "d", "e"} { // a is used again: b and c are the oldest
		mustBreaker(t, g, k)
	}
	if n := g.Len(); n != 3 {
		t.Errorf("Len: got %d, want 3", n)
	}
	if b := mustBreaker(t, g, "a"); b != a {
		t.Error("the recently used breaker a was evicted")
	}
	if _, err := a.Allow(ctx); err != nil {
		t.Errorf("a.Allow: %v", err)
	}
	// b was evicted and closed; asking for it makes a new breaker.
	b := mustBreaker(t, g, "b")
	if n := g.Len(); n != 3 {
		t.Errorf("Len after b came back: got %d, want 3", n)
	}
	p, err := b.Allow(ctx)
	if err != nil {
		t.Fatalf("new b.Allow: %v", err)
	}
	p.Done(ctx, nil)
}

func TestGroupNeverEvictsAHeldBreaker(t *testing.T) {
	e := newMini(t)
	g := e.group(breaker.GroupOptions{MaxBreakers: 2})
	ctx := context.Background()
	var held []*breaker.Breaker
	var releases []func()
	for _, k := range []string{"a", "b", "c"} {
		b, release, err := g.Hold(k)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, b)
		releases = append(releases, release)
	}
	if n := g.Len(); n != 3 {
		t.Errorf("Len with 3 held and MaxBreakers 2: got %d, want 3", n)
	}
	for _, b := range held {
		if err := b.Check(ctx); err != nil {
			t.Errorf("held breaker %s: Check: %v", b.Name(), err)
		}
	}
	releases[0]()
	releases[0]() // a second release does nothing
	if n := g.Len(); n != 2 {
		t.Errorf("Len after a release: got %d, want 2", n)
	}
	if err := held[0].Check(ctx); !errors.Is(err, breaker.ErrClosed) {
		t.Errorf("released breaker pushed out: Check: got %v, want ErrClosed", err)
	}
	releases[1]()
	releases[2]()
	if n := g.Len(); n != 2 {
		t.Errorf("Len after all releases: got %d, want 2", n)
	}
}

func TestGroupClosesIdleBreakers(t *testing.T) {
	e := newMini(t)
	g := e.group(breaker.GroupOptions{IdleTimeout: time.Minute})
	ctx := context.Background()
	a := mustBreaker(t, g, "a")
	e.clock.BlockUntil(1) // the sweeper waits
	e.advance(30 * time.Second)
	mustBreaker(t, g, "b")
	if n := g.Len(); n != 2 {
		t.Fatalf("Len before a is idle: got %d, want 2", n)
	}
	// A call for another key sweeps a once it is idle.
	e.advance(30 * time.Second)
	mustBreaker(t, g, "c")
	if n := g.Len(); n != 2 {
		t.Errorf("Len after a was idle for 1m: got %d, want 2 (b and c)", n)
	}
	if err := a.Check(ctx); !errors.Is(err, breaker.ErrClosed) {
		t.Errorf("idle breaker: Check: got %v, want ErrClosed", err)
	}
	// With no calls at all, the sweeper closes the rest.
	for g.Len() > 0 {
		e.clock.BlockUntil(1)
		e.advance(30 * time.Second)
	}
}

func TestGroupKeepsIdleBreakersWhenToldTo(t *testing.T) {
	e := newMini(t)
	g := e.group(breaker.GroupOptions{IdleTimeout: -1})
	mustBreaker(t, g, "a")
	e.advance(24 * time.Hour)
	mustBreaker(t, g, "b")
	if n := g.Len(); n != 2 {
		t.Errorf("Len: got %d, want 2", n)
	}
}

func TestGroupRejectsBadKeysAndSettings(t *testing.T) {
	e := newMini(t)
	g := e.group(breaker.GroupOptions{SettingsFor: func(key string, s breaker.Settings) breaker.Settings {
		if key == "bad" {
			s.FailureRate = 2
		}
		return s
	}})
	for _, key := range []string{"", "a{b}", "bad"} {
		if _, err := g.Breaker(key); !errors.Is(err, breaker.ErrInvalidSettings) {
			t.Errorf("Breaker(%q): got %v, want ErrInvalidSettings", key, err)
		}
	}
	if n := g.Len(); n != 0 {
		t.Errorf("Len after bad keys: got %d, want 0", n)
	}
	for _, tt := range []struct {
		name string
		opts breaker.GroupOptions
	}{
		{"MaxBreakers", breaker.GroupOptions{MaxBreakers: -1}},
		{"MaxProbes", breaker.GroupOptions{Settings: breaker.Settings{MaxProbes: -1}}},
	} {
		if _, err := breaker.NewGroup(e.store(), tt.opts); !errors.Is(err, breaker.ErrInvalidSettings) || !strings.Contains(err.Error(), tt.name) {
			t.Errorf("NewGroup with a bad %s: got %v, want ErrInvalidSettings naming it", tt.name, err)
		}
	}
	if _, err := breaker.NewGroup(nil, breaker.GroupOptions{}); !errors.Is(err, breaker.ErrInvalidSettings) {
		t.Errorf("NewGroup(nil): got %v, want ErrInvalidSettings", err)
	}
	var typedNil *store.Store
	if g, err := breaker.NewGroup(typedNil, breaker.GroupOptions{}); !errors.Is(err, breaker.ErrInvalidSettings) {
		if g != nil {
			g.Close()
		}
		t.Errorf("NewGroup((*store.Store)(nil)): got %v, want ErrInvalidSettings, as New gives", err)
	}
}

func TestGroupSurvivesAPanickingHook(t *testing.T) {
	e := newMini(t)
	var panics atomic.Bool
	panics.Store(true)
	g := e.group(breaker.GroupOptions{OnBreaker: func(*breaker.Breaker) {
		if panics.Load() {
			panic("hook")
		}
	}})
	func() {
		defer func() {
			if r := recover(); r != "hook" {
				t.Errorf("recovered %v, want the hook's panic", r)
			}
		}()
		_, _ = g.Breaker("a")
	}()
	if n := g.Len(); n != 0 {
		t.Errorf("Len after a panicking hook: got %d, want 0", n)
	}
	panics.Store(false)
	mustBreaker(t, g, "a")
}

func TestGroupClose(t *testing.T) {
	e := newMini(t)
	g := e.group(breaker.GroupOptions{})
	a := mustBreaker(t, g, "a")
	_, release, err := g.Hold("b")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	release()
	if err := a.Check(context.Background()); !errors.Is(err, breaker.ErrClosed) {
		t.Errorf("breaker after Close: got %v, want ErrClosed", err)
	}
	if _, err := g.Breaker("a"); !errors.Is(err, breaker.ErrClosed) {
		t.Errorf("Breaker after Close: got %v, want ErrClosed", err)
	}
	if _, err := breaker.ExecuteIn(context.Background(), g, "a", func(context.Context) (int, error) { return 1, nil }); !errors.Is(err, breaker.ErrClosed) {
		t.Errorf("ExecuteIn after Close: got %v, want ErrClosed", err)
	}
	if err := g.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestGroupConcurrentUse: many callers on many keys through a small group;
// no held breaker is ever closed under a call, and the bound holds once
// they are done.
func TestGroupConcurrentUse(t *testing.T) {
	e := newMini(t)
	const maxBreakers = 4
	var made atomic.Int64
	g := e.group(breaker.GroupOptions{MaxBreakers: maxBreakers, OnBreaker: func(*breaker.Breaker) { made.Add(1) }})
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			for i := 0; i < 50; i++ {
				key := fmt.Sprintf("k%d", r.Intn(10))
				_, err := breaker.ExecuteIn(ctx, g, key, func(context.Context) (int, error) { return 0, nil })
				if err != nil {
					t.Errorf("ExecuteIn(%s): %v", key, err)
					return
				}
			}
		}(int64(w))
	}
	wg.Wait()
	if n := g.Len(); n > maxBreakers {
		t.Errorf("Len: got %d, want at most %d", n, maxBreakers)
	}
	if made.Load() < 10 {
		t.Errorf("breakers made: got %d, want at least one per key (10)", made.Load())
	}
}
