package fakeclock

import (
	"context"
	"sync"
	"time"
)

// Clock is a fake clock whose time moves only when Advance is called.
//
// The zero value is a usable clock standing at the zero time; New sets the
// starting time. A Clock must not be copied after first use.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	pending []*Timer      // timers not yet fired or stopped, in no order
	seq     uint64        // creation counter; orders timers with equal deadlines
	changed chan struct{} // closed and replaced whenever pending changes
}

// New returns a Clock standing at start.
func New(start time.Time) *Clock {
	return &Clock{now: start}
}

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives the clock's time once the clock has
// advanced by d. Like [time.After], a d of zero or less fires at once. The
// timer stays pending (and counts for BlockUntil) until it fires; use NewTimer
// when the wait may be abandoned.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	return c.NewTimer(d).C
}

// NewTimer returns a Timer that sends the clock's time on its channel once the
// clock has advanced by d. A d of zero or less fires at once.
func (c *Clock) NewTimer(d time.Duration) *Timer {
	ch := make(chan time.Time, 1)
	t := &Timer{C: ch, c: ch, clock: c}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.schedule(t, d)
	return t
}

// Advance moves the clock forward by d and fires, earliest deadline first, every
// pending timer that falls due; timers with equal deadlines fire in the order
// they were created. Each timer receives its own deadline, and Now reports that
// deadline while it fires. A d of zero fires the timers already due; a negative
// d is treated as zero, since the clock never moves backwards.
func (c *Clock) Advance(d time.Duration) {
	if d < 0 {
		d = 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	target := c.now.Add(d)
	fired := false
	for {
		i := c.earliest()
		if i < 0 || c.pending[i].when.After(target) {
			break
		}
		t := c.pending[i]
		c.remove(i)
		if t.when.After(c.now) {
			c.now = t.when
		}
		t.c <- t.when // cannot block: the channel is drained whenever t is scheduled
		fired = true
	}
	c.now = target
	if fired {
		c.notify()
	}
}

// Pending returns the number of timers that have been created (by After,
// NewTimer or Timer.Reset) and have neither fired nor been stopped.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// Next returns the deadline of the earliest pending timer, and false when no
// timer is pending. A test can advance by Next minus Now to fire exactly that
// timer, or compare it with the wait it expects.
func (c *Clock) Next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := c.earliest()
	if i < 0 {
		return time.Time{}, false
	}
	return c.pending[i].when, true
}

// BlockUntil blocks until at least n timers are pending, which is how a test
// waits for goroutines to start waiting on the clock without sleeping. It is
// shorthand for BlockUntilContext with a context that is never done.
func (c *Clock) BlockUntil(n int) {
	_ = c.BlockUntilContext(context.Background(), n)
}

// BlockUntilContext blocks until at least n timers are pending or ctx is done,
// and returns ctx's error in the latter case.
func (c *Clock) BlockUntilContext(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		if len(c.pending) >= n {
			c.mu.Unlock()
			return nil
		}
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// schedule makes t fire d after the current time. c.mu must be held and t must
// not be pending.
func (c *Clock) schedule(t *Timer, d time.Duration) {
	t.when = c.now.Add(d)
	if d <= 0 {
		t.c <- t.when
		return
	}
	c.seq++
	t.seq = c.seq
	c.pending = append(c.pending, t)
	c.notify()
}

// earliest returns the index of the pending timer that fires first, or -1.
// c.mu must be held.
func (c *Clock) earliest() int {
	best := -1
	for i, t := range c.pending {
		if best < 0 || t.when.Before(c.pending[best].when) ||
			(t.when.Equal(c.pending[best].when) && t.seq < c.pending[best].seq) {
			best = i
		}
	}
	return best
}

// remove drops the pending timer at index i. c.mu must be held.
func (c *Clock) remove(i int) {
	last := len(c.pending) - 1
	c.pending[i] = c.pending[last]
	c.pending[last] = nil
	c.pending = c.pending[:last]
}

// unschedule removes t from the pending timers and reports whether it was
// pending. c.mu must be held.
func (c *Clock) unschedule(t *Timer) bool {
	for i, p := range c.pending {
		if p == t {
			c.remove(i)
			c.notify()
			return true
		}
	}
	return false
}

// notify wakes every BlockUntilContext caller. c.mu must be held.
func (c *Clock) notify() {
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

// Timer is a single event on a Clock, the fake counterpart of [time.Timer].
// Create one with Clock.NewTimer; Stop and Reset on a zero Timer do nothing.
type Timer struct {
	// C receives the timer's deadline when it fires.
	C <-chan time.Time

	c     chan time.Time
	clock *Clock
	when  time.Time // guarded by clock.mu
	seq   uint64    // guarded by clock.mu
}

// Stop prevents the timer from firing and reports whether it was pending. As
// with [time.Timer] since Go 1.23, a value already sent but not yet received is
// discarded, so no stale value is read from C after Stop returns.
func (t *Timer) Stop() bool {
	if t.clock == nil {
		return false
	}
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	was := t.clock.unschedule(t)
	t.drain()
	return was
}

// Reset makes the timer fire d after the clock's current time, discarding any
// value not yet received, and reports whether the timer was pending. Reset on a
// Timer not made by NewTimer does nothing and returns false.
func (t *Timer) Reset(d time.Duration) bool {
	if t.clock == nil {
		return false
	}
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	was := t.clock.unschedule(t)
	t.drain()
	t.clock.schedule(t, d)
	return was
}

// drain discards a fired value not yet received.
func (t *Timer) drain() {
	select {
	case <-t.c:
	default:
	}
}
