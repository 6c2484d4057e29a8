// Package breakwatertest gives tests of code that uses Breakwater a store on
// an embedded Redis, so that they need no Redis server:
//
//	func TestCheckout(t *testing.T) {
//		st := breakwatertest.NewStore(t) // closed when the test ends
//		b, err := breaker.New("payments", st, breaker.Settings{ConsecutiveFailures: 2})
//		...
//	}
//
// The embedded Redis is miniredis (github.com/alicebob/miniredis/v2), which
// runs Breakwater's own Lua scripts: a breaker under test follows exactly
// the state machine it follows in production, not a second implementation
// of it. What miniredis does not model (Redis Cluster, replication, real
// network faults) is tested against real Redis by Breakwater's own tests.
//
// A Server's Clock moves the embedded Redis's clock (the one every shared
// decision is taken on) and the breakers' local clock together, so that a
// test sees a breaker half-open after its OpenDuration without sleeping.
package breakwatertest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/internal/fakeclock"
	"github.com/breakwater-go/breakwater/store"
)

// Server is an embedded Redis for tests, with the stores and clients made
// on it. Make it with NewServer in a test, or Start elsewhere; it is safe
// for concurrent use.
type Server struct {
	m    *miniredis.Miniredis
	addr string

	mu      sync.Mutex
	closers []func() error // stores and clients, closed in reverse order
	clock   *Clock
	closed  bool
}

// Start starts an embedded Redis on a free local port. Close stops it. In
// a test, NewServer does both.
func Start() (*Server, error) {
	m, err := miniredis.Run()
	if err != nil {
		return nil, fmt.Errorf("breakwatertest: start embedded redis: %w", err)
	}
	return &Server{m: m, addr: m.Addr()}, nil
}

// NewServer starts an embedded Redis that is closed, with every store and
// client made on it, when tb and its subtests end. It fails tb when the
// server cannot start.
func NewServer(tb testing.TB) *Server {
	tb.Helper()
	s, err := Start()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// NewStore returns a store on an embedded Redis of its own, closed with the
// Redis when tb and its subtests end: the one call most tests need. opts,
// at most one, are the store's Options (default: the zero Options). It
// fails tb when opts are invalid. Use NewServer for several stores on one
// Redis (the instances of a fleet) or to move the clock.
func NewStore(tb testing.TB, opts ...store.Options) *store.Store {
	tb.Helper()
	st, err := NewServer(tb).Store(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// Store returns a new store on s, with a Redis client of its own, as a
// separate instance of a service would have: breakers of the same name on
// two stores of s are one shared breaker. opts, at most one, are the
// store's Options. Close closes the store and its client.
func (s *Server) Store(opts ...store.Options) (*store.Store, error) {
	if len(opts) > 1 {
		return nil, errors.New("breakwatertest: Store takes at most one store.Options")
	}
	var o store.Options
	if len(opts) == 1 {
		o = opts[0]
	}
	c, err := s.Client()
	if err != nil {
		return nil, err
	}
	st, err := store.New(c, o)
	if err != nil {
		return nil, err
	}
	if err := s.track(st.Close); err != nil {
		_ = st.Close()
		return nil, err
	}
	return st, nil
}

// Client returns a new go-redis client of s, which Close closes.
func (s *Server) Client() (*redis.Client, error) {
	c := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
	if err := s.track(c.Close); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

func (s *Server) track(close func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("breakwatertest: server closed")
	}
	s.closers = append(s.closers, close)
	return nil
}

// Addr returns the embedded Redis's address, host:port.
func (s *Server) Addr() string { return s.addr }

// Miniredis returns the embedded Redis itself, to inspect its keys or to
// make it fail (Close, SetError) in a test of what happens when Redis is
// away.
func (s *Server) Miniredis() *miniredis.Miniredis { return s.m }

// Clock returns s's fake clock, the same one on every call. From the first
// call on, the embedded Redis's clock stands still, with the fake clock,
// until Clock.Advance moves both. Give it as breaker.Settings.Clock (and
// retry.Policy.Clock) so that local deadlines move with the shared ones.
func (s *Server) Clock() *Clock {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clock == nil {
		start := time.Now().Truncate(time.Millisecond)
		s.m.SetTime(start)
		s.clock = &Clock{fake: fakeclock.New(start), m: s.m}
	}
	return s.clock
}

// Close closes the stores and clients made on s, newest first, then stops
// the embedded Redis. Close breakers before it. Later calls do nothing.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	closers := s.closers
	s.closers = nil
	s.mu.Unlock()
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		errs = append(errs, closers[i]())
	}
	s.m.Close()
	return errors.Join(errs...)
}

// Clock is a fake clock that moves a Server's Redis clock with it. It is a
// clock.Clock (breaker.Clock, retry.Clock); it stands still until Advance
// is called.
type Clock struct {
	mu   sync.Mutex // serialises Advance, so that Redis's time never goes back
	fake *fakeclock.Clock
	m    *miniredis.Miniredis
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { return c.fake.Now() }

// After returns a channel that receives the clock's time once Advance has
// moved it by d.
func (c *Clock) After(d time.Duration) <-chan time.Time { return c.fake.After(d) }

// Advance moves the clock, and the embedded Redis's clock, forward by d,
// and fires the waits (After) that fall due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d < 0 {
		d = 0
	}
	c.m.SetTime(c.fake.Now().Add(d))
	c.fake.Advance(d)
}
