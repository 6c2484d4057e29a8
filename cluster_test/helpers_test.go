package clustertest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/cluster_test/internal/fleet"
	"github.com/breakwater-go/breakwater/store"
)

// errDependency is what the protected dependency returns when it fails.
var errDependency = errors.New("dependency: unavailable")

// member is one instance of the fleet: its own go-redis client, store and
// breaker, and a recorder of the breaker's events.
type member struct {
	id     string
	client *redis.Client
	store  *store.Store
	b      *breaker.Breaker
	events *recorder
	reads  *readCounter
}

// readCounter counts a breaker's reads of the store that succeeded.
type readCounter struct {
	breaker.NopObserver
	n atomic.Int64
}

func (c *readCounter) StoreCalled(sc breaker.StoreCall) {
	if sc.Op == "read" && sc.Err == nil {
		c.n.Add(1)
	}
}

// fleetConfig describes a fleet of instances sharing one breaker.
type fleetConfig struct {
	size     int
	name     string // the breaker's name
	settings breaker.Settings
	store    store.Options // Prefix: give each test its own
	// client adjusts each instance's go-redis options (nil: go-redis's
	// defaults, with Addr set).
	client func(*redis.Options)
}

// startFleet makes cfg.size instances against r. Each is closed when the
// test ends (breaker, then store, then client).
func startFleet(t *testing.T, r *fleet.Redis, cfg fleetConfig) []*member {
	t.Helper()
	if cfg.store.Prefix == "" {
		t.Fatal("startFleet: want a Prefix of the test's own")
	}
	var opts []func(*redis.Options)
	if cfg.client != nil {
		opts = append(opts, cfg.client)
	}
	ms := make([]*member, cfg.size)
	for i := range ms {
		id := fmt.Sprintf("i%02d", i)
		c := r.Client(t, opts...)
		st, err := store.New(c, cfg.store)
		if err != nil {
			t.Fatalf("store.New: %v", err)
		}
		t.Cleanup(func() { _ = st.Close() })
		s := cfg.settings
		s.Instance = id
		reads := &readCounter{}
		if s.Observer == nil {
			s.Observer = reads
		}
		if s.Reporting == breaker.ReportBatched && s.FlushInterval == 0 {
			// These tests follow each outcome's effect call by call: report
			// each before Done returns (batched reporting is tested in the
			// library's own tests and in the service scenarios).
			s.Reporting = breaker.ReportSync
		}
		b, err := breaker.New(cfg.name, st, s)
		if err != nil {
			t.Fatalf("breaker.New: %v", err)
		}
		t.Cleanup(func() { _ = b.Close() })
		m := &member{id: id, client: c, store: st, b: b, events: &recorder{}, reads: reads}
		b.Listen(m.events.add)
		ms[i] = m
	}
	if cfg.settings.Observer == nil {
		// Each breaker reads its state once its store's subscription has
		// started (announcements made before it were missed): let those
		// reads end, so that a test that then cuts Redis off cuts no read.
		eventually(t, 10*time.Second, func() string { return "every instance's first read after subscribing" }, func() bool {
			for _, m := range ms {
				if m.reads.n.Load() == 0 {
					return false
				}
			}
			return true
		})
	}
	return ms
}

// recorder keeps the events a breaker announced.
type recorder struct {
	mu  sync.Mutex
	evs []breaker.Event
}

func (r *recorder) add(e breaker.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, e)
	r.mu.Unlock()
}

// all returns the events so far, oldest first.
// reset forgets the events so far.
func (r *recorder) reset() {
	r.mu.Lock()
	r.evs = nil
	r.mu.Unlock()
}

func (r *recorder) all() []breaker.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]breaker.Event(nil), r.evs...)
}

// of returns the events of kind k.
func (r *recorder) of(k breaker.EventKind) []breaker.Event {
	var out []breaker.Event
	for _, e := range r.all() {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// transitions returns the StateChanged events from one state to another.
func (r *recorder) transitions(from, to breaker.State) []breaker.Event {
	var out []breaker.Event
	for _, e := range r.of(breaker.StateChanged) {
		if e.From == from && e.To == to {
			out = append(out, e)
		}
	}
	return out
}

// describe lists the events for failure messages.
func (r *recorder) describe() string {
	var b strings.Builder
	for _, e := range r.all() {
		fmt.Fprintf(&b, "\n\t%v %v->%v gen=%d reason=%q by=%q unreported=%d err=%v",
			e.Kind, e.From, e.To, e.Generation, e.Reason, e.Instance, e.Unreported, e.Err)
	}
	if b.Len() == 0 {
		return " (none)"
	}
	return b.String()
}

// eventually polls cond until it holds, failing the test after within.
func eventually(t *testing.T, within time.Duration, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what())
		}
		<-tick.C
	}
}

// everyMember waits until cond holds for every member.
func everyMember(t *testing.T, ms []*member, within time.Duration, want string, cond func(m *member) bool) {
	t.Helper()
	var late *member
	eventually(t, within, func() string {
		return fmt.Sprintf("instance %s: want %s; its events:%s", late.id, want, late.events.describe())
	}, func() bool {
		for _, m := range ms {
			if !cond(m) {
				late = m
				return false
			}
		}
		return true
	})
}

// dependency is the protected service: it counts the calls that reach it.
type dependency struct {
	calls atomic.Int64
}

// fail is a call to a dependency that is down.
func (d *dependency) fail(context.Context) (struct{}, error) {
	d.calls.Add(1)
	return struct{}{}, errDependency
}

// succeed is a call to a dependency that is up.
func (d *dependency) succeed(context.Context) (struct{}, error) {
	d.calls.Add(1)
	return struct{}{}, nil
}

// timed runs f and returns how long it took.
func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

// snapshot reads the shared state through m, failing the test on error.
func snapshot(t *testing.T, m *member) breaker.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap, err := m.b.Snapshot(ctx)
	if err != nil {
		t.Fatalf("instance %s: Snapshot: %v", m.id, err)
	}
	return snap
}

// succeedOnce runs one successful call through each member, failing the
// test when a call is rejected.
func succeedOnce(t *testing.T, ms []*member, dep *dependency) {
	t.Helper()
	for _, m := range ms {
		if _, err := breaker.Execute(context.Background(), m.b, dep.succeed); err != nil {
			t.Fatalf("instance %s: Execute(success) = %v, want nil", m.id, err)
		}
	}
}

// announcements subscribes to a store's channel with a client of its own,
// so that a test can count the transitions announced.
type announcements struct {
	t  *testing.T
	c  *redis.Client
	ps *redis.PubSub
}

// fence is published to mark the end of what a test wants to count; the
// stores drop it, as it is no announcement.
const fence = "fence"

func subscribe(t *testing.T, r *fleet.Redis, channel string) *announcements {
	t.Helper()
	c := r.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ps := c.Subscribe(ctx, channel)
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.ReceiveTimeout(ctx, 5*time.Second); err != nil { // the confirmation
		t.Fatalf("subscribe %s: %v", channel, err)
	}
	return &announcements{t: t, c: c, ps: ps}
}

// until publishes a fence and returns the first line ("<generation>
// <name>") of each announcement received before it.
func (a *announcements) until(channel string) []string {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.c.Publish(ctx, channel, fence).Err(); err != nil {
		a.t.Fatalf("publish fence: %v", err)
	}
	var got []string
	for {
		msg, err := a.ps.ReceiveTimeout(ctx, 5*time.Second)
		if err != nil {
			a.t.Fatalf("receive announcements: %v (so far %q)", err, got)
		}
		if m, ok := msg.(*redis.Message); ok {
			if m.Payload == fence {
				return got
			}
			if strings.HasPrefix(m.Payload, "settle ") {
				continue // a call to report at once, not a transition
			}
			head, _, _ := strings.Cut(m.Payload, "\n")
			got = append(got, head)
		}
	}
}
