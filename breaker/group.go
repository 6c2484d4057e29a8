package breaker

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/breakwater-go/breakwater/clock"
)

// Defaults of GroupOptions.
const (
	DefaultMaxBreakers = 1000
	DefaultIdleTimeout = 5 * time.Minute
)

// GroupOptions configure a Group. The zero value of every field means its
// default.
type GroupOptions struct {
	// Settings are the settings every key's breaker starts from.
	Settings Settings
	// SettingsFor, when set, returns the settings of key's breaker, given
	// the shared Settings: return shared for the keys it does not single
	// out, or a copy with the fields it overrides. It is called each time
	// the group makes key's breaker (again, after an eviction), and must be
	// safe for concurrent use. Settings it returns that New rejects make
	// that key's calls fail with an error matching ErrInvalidSettings.
	SettingsFor func(key string, shared Settings) Settings
	// MaxBreakers bounds how many breakers the group keeps (default
	// DefaultMaxBreakers, 1000). When a new key would pass it, the group
	// closes the least recently used breakers that no caller holds. Held
	// breakers are never closed by the bound, so while more than
	// MaxBreakers keys are held at once the group holds that many.
	MaxBreakers int
	// IdleTimeout closes a breaker that no caller has used for this long
	// (default DefaultIdleTimeout, 5 minutes; negative: never). Its shared
	// state stays in the store; the next call for its key makes it again.
	IdleTimeout time.Duration
	// OnBreaker, when set, is called once with each breaker the group
	// makes, before any caller gets it (for example to Listen to it). It
	// must not ask the group for a breaker.
	OnBreaker func(*Breaker)
	// Clock measures idle time (default: Settings.Clock, else the system
	// clock).
	Clock Clock
}

// Group keeps breakers made on demand, one per key (a tenant, a host, a
// route), from one Store: the keys are the breakers' names, so every
// instance of the fleet that uses the same key shares its breaker. The
// breakers share GroupOptions.Settings, with per-key overrides from
// GroupOptions.SettingsFor. A Group bounds how many breakers it keeps
// (MaxBreakers) and closes those left idle (IdleTimeout); closing a breaker
// only frees this instance's memory and subscription, never the shared
// state.
//
// Most callers run a call with ExecuteIn, or Hold a breaker for the length
// of a call; a held breaker is never closed by the group before it is
// released. A breaker from Breaker is not held: the group may close it once
// it is idle or pushed out, after which its methods return ErrClosed, and
// the next Breaker call for its key makes a new one.
//
// Two groups on one Store share the breakers of the keys they have in
// common; give each group a key prefix of its own (say "tenant:") when they
// should not. A Group is safe for concurrent use; Close closes its breakers.
type Group struct {
	store       Store
	settings    Settings
	settingsFor func(string, Settings) Settings
	max         int
	idle        time.Duration
	onBreaker   func(*Breaker)
	clock       Clock

	mu      sync.Mutex
	entries map[string]*entry
	lru     list.List // of *entry; front: most recently used
	closed  bool

	stop chan struct{} // closed by Close; ends the idle sweeper
	done chan struct{} // closed when the idle sweeper has ended
}

// entry is one key's breaker, being made or made.
type entry struct {
	key     string
	ready   chan struct{} // closed once br or err is set
	br      *Breaker
	err     error
	refs    int       // callers holding the entry (and the maker)
	last    time.Time // last acquired or released
	elem    *list.Element
	removed bool // no longer in the group
}

// errMakePanicked is the error of an entry whose making panicked (in
// SettingsFor or OnBreaker); the panic itself reaches the caller that made it.
var errMakePanicked = errors.New("breaker: group: making the breaker panicked")

// NewGroup returns a group of breakers kept in st. It returns an error
// matching ErrInvalidSettings when st is nil (or a nil pointer), opts.Settings are invalid or
// opts.MaxBreakers is negative. NewGroup does no I/O; Close stops it.
func NewGroup(st Store, opts GroupOptions) (*Group, error) {
	if isNil(st) {
		return nil, &SettingsError{Field: "store", Value: nil, Reason: "want a Store, such as store.New's"}
	}
	if err := opts.Settings.Validate(); err != nil {
		return nil, err
	}
	if opts.MaxBreakers < 0 {
		return nil, &SettingsError{Field: "MaxBreakers", Value: opts.MaxBreakers, Reason: "want >= 1, or 0 for the default"}
	}
	g := &Group{
		store:       st,
		settings:    opts.Settings,
		settingsFor: opts.SettingsFor,
		max:         opts.MaxBreakers,
		idle:        opts.IdleTimeout,
		onBreaker:   opts.OnBreaker,
		clock:       opts.Clock,
		entries:     map[string]*entry{},
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
	}
	if g.max == 0 {
		g.max = DefaultMaxBreakers
	}
	if g.idle == 0 {
		g.idle = DefaultIdleTimeout
	}
	if g.clock == nil {
		g.clock = opts.Settings.Clock
	}
	if g.clock == nil {
		g.clock = clock.System{}
	}
	if g.idle > 0 {
		go g.sweeper()
	} else {
		close(g.done)
	}
	return g, nil
}

// Breaker returns key's breaker, making it on the first call (and again
// after the group closed it). The breaker is not held: see Group. It
// returns ErrClosed after Close, and an error matching ErrInvalidSettings
// when key cannot name a breaker (see CheckName) or its settings are
// invalid.
func (g *Group) Breaker(key string) (*Breaker, error) {
	e, err := g.acquire(key)
	if err != nil {
		return nil, err
	}
	g.release(e)
	return e.br, nil
}

// Hold returns key's breaker, as Breaker does, and holds it until release
// is called: the group does not close a held breaker (except by Close).
// Call release once, when the call (or calls) made with the breaker are
// over; later calls of release do nothing.
func (g *Group) Hold(key string) (b *Breaker, release func(), err error) {
	e, err := g.acquire(key)
	if err != nil {
		return nil, nil, err
	}
	var once sync.Once
	return e.br, func() { once.Do(func() { g.release(e) }) }, nil
}

// ExecuteIn runs fn under the breaker of key in g, as Execute does, holding
// the breaker for the length of the call. It returns Breaker's error when
// the group cannot give the breaker.
func ExecuteIn[T any](ctx context.Context, g *Group, key string, fn func(context.Context) (T, error)) (T, error) {
	b, release, err := g.Hold(key)
	if err != nil {
		var zero T
		return zero, err
	}
	defer release()
	return Execute(ctx, b, fn)
}

// Len returns how many breakers the group keeps now, those being made
// included.
func (g *Group) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.entries)
}

// Close closes every breaker of the group, held ones included, and makes
// later calls return ErrClosed. The shared state is untouched.
func (g *Group) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	victims := make([]*entry, 0, len(g.entries))
	for el := g.lru.Front(); el != nil; el = el.Next() {
		victims = append(victims, el.Value.(*entry))
	}
	for _, e := range victims {
		g.removeLocked(e)
	}
	g.mu.Unlock()
	close(g.stop)
	<-g.done
	return g.closeAll(victims)
}

// acquire returns key's entry, made, with a reference held.
func (g *Group) acquire(key string) (*entry, error) {
	if err := CheckName(key); err != nil {
		return nil, err
	}
	now := g.clock.Now()
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil, ErrClosed
	}
	e, found := g.entries[key]
	if found {
		g.lru.MoveToFront(e.elem)
	} else {
		e = &entry{key: key, ready: make(chan struct{})}
		e.elem = g.lru.PushFront(e)
		g.entries[key] = e
	}
	e.refs++
	e.last = now
	victims := g.trimLocked(now)
	g.mu.Unlock()
	_ = g.closeAll(victims)

	if found {
		<-e.ready
	} else {
		g.make(e)
	}
	if e.err != nil {
		g.release(e)
		return nil, e.err
	}
	return e, nil
}

// make makes e's breaker. An entry whose breaker could not be made leaves
// the group, so that the next call tries again.
func (g *Group) make(e *entry) {
	e.err = errMakePanicked
	defer func() {
		if e.err != nil {
			if e.br != nil {
				_ = e.br.Close()
				e.br = nil
			}
			g.mu.Lock()
			g.removeLocked(e)
			g.mu.Unlock()
		}
		close(e.ready)
	}()
	s := g.settings
	if g.settingsFor != nil {
		s = g.settingsFor(e.key, s)
	}
	br, err := New(e.key, g.store, s)
	if err != nil {
		e.err = err
		return
	}
	e.br = br
	if g.onBreaker != nil {
		g.onBreaker(br)
	}
	e.err = nil
}

// release drops a reference to e and trims the group, which may have grown
// past MaxBreakers while e was held.
func (g *Group) release(e *entry) {
	now := g.clock.Now()
	g.mu.Lock()
	e.refs--
	e.last = now
	if !e.removed {
		g.lru.MoveToFront(e.elem)
	}
	victims := g.trimLocked(now)
	g.mu.Unlock()
	_ = g.closeAll(victims)
}

// trimLocked removes, least recently used first, the entries that nobody
// holds and that are idle or past the MaxBreakers bound, and returns them
// for closing outside the lock.
func (g *Group) trimLocked(now time.Time) []*entry {
	var victims []*entry
	for el := g.lru.Back(); el != nil; {
		e, prev := el.Value.(*entry), el.Prev()
		over := len(g.entries) > g.max
		idle := g.idle > 0 && now.Sub(e.last) >= g.idle
		if !over && !idle && e.refs == 0 {
			break // every entry in front of e was used more recently
		}
		if e.refs == 0 && (over || idle) {
			g.removeLocked(e)
			victims = append(victims, e)
		}
		el = prev
	}
	return victims
}

func (g *Group) removeLocked(e *entry) {
	if e.removed {
		return
	}
	e.removed = true
	g.lru.Remove(e.elem)
	if g.entries[e.key] == e {
		delete(g.entries, e.key)
	}
}

// closeAll closes the breakers of entries removed from the group.
func (g *Group) closeAll(victims []*entry) error {
	var errs []error
	for _, e := range victims {
		<-e.ready
		if e.br != nil {
			errs = append(errs, e.br.Close())
		}
	}
	return errors.Join(errs...)
}

// sweeper closes idle breakers when no call comes to do it.
func (g *Group) sweeper() {
	defer close(g.done)
	interval := max(g.idle/2, time.Millisecond)
	for {
		select {
		case <-g.stop:
			return
		case <-g.clock.After(interval):
		}
		now := g.clock.Now()
		g.mu.Lock()
		victims := g.trimLocked(now)
		g.mu.Unlock()
		_ = g.closeAll(victims)
	}
}
