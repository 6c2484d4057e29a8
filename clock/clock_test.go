package clock_test

import (
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/clock"
	"github.com/breakwater-go/breakwater/internal/fakeclock"
)

// The fake clock of the project's tests is a Clock.
var _ clock.Clock = (*fakeclock.Clock)(nil)

func TestSystem(t *testing.T) {
	var c clock.Clock = clock.System{}
	before := time.Now()
	now := c.Now()
	if now.Before(before) || now.Sub(before) > time.Minute {
		t.Errorf("Now: got %v, want about %v", now, before)
	}
	select {
	case <-c.After(0):
	case <-time.After(time.Minute):
		t.Fatal("After(0) did not fire")
	}
}
