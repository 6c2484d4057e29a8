// Package clock is the one clock type every Breakwater package accepts:
// breaker.Settings.Clock, retry.Policy.Clock, store.BudgetOptions.Clock and
// breaker.GroupOptions.Clock are all a Clock, so one fake clock drives them
// all in a test.
//
// A Clock tells local time only. Shared decisions (when a breaker opens,
// when its next probe is due) are taken on Redis's clock; a Clock measures
// local waits, call durations and idle times, and turns the store's "open
// for another 3.2 s" into a local deadline.
package clock

import "time"

// Clock tells the local time and waits on it. System is the real clock;
// tests give a fake one that moves only when told, so that they never sleep.
// A Clock must be safe for concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After returns a channel that receives the time once d has passed.
	// A d of zero or less fires at once.
	After(d time.Duration) <-chan time.Time
}

// System is the system clock: time.Now and time.After. Its zero value is
// ready to use, and it is what every package uses when no Clock is given.
type System struct{}

// Now returns time.Now().
func (System) Now() time.Time { return time.Now() }

// After returns time.After(d).
func (System) After(d time.Duration) <-chan time.Time { return time.After(d) }

var _ Clock = System{}
