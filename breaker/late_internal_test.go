package breaker

import (
	"testing"
	"time"
)

// TestLatenessRemembersTheLastSecond: the settling time widens by the
// largest lateness of the last one to two seconds; when a large one ages
// out, the smaller ones after it still count.
func TestLatenessRemembersTheLastSecond(t *testing.T) {
	const interval, ms = 5 * time.Millisecond, time.Millisecond
	t0 := time.Unix(1000, 0)
	var l lateBy
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	if got := l.recent(t0); got != 0 {
		t.Fatalf("nothing delivered: %v, want 0", got)
	}
	l.delivered(interval+10*ms, interval, t0)  // 10ms late
	l.delivered(interval-ms, interval, at(ms)) // on time
	if got := l.recent(at(2 * ms)); got != 10*ms {
		t.Fatalf("just after a batch 10ms late: %v, want 10ms", got)
	}
	l.delivered(interval+3*ms, interval, at(1500*ms)) // 3ms late
	if got := l.recent(at(1600 * ms)); got != 10*ms {
		t.Fatalf("1.6s after a batch 10ms late: %v, want 10ms", got)
	}
	if got := l.recent(at(2100 * ms)); got != 3*ms {
		t.Fatalf("2.1s after a batch 10ms late, 0.6s after one 3ms late: %v, want 3ms", got)
	}
	if got := l.recent(at(4 * time.Second)); got != 0 {
		t.Fatalf("2.5s after the last late batch: %v, want 0", got)
	}
	l.delivered(interval+2*ms, interval, at(time.Hour))
	if got := l.recent(at(time.Hour + ms)); got != 2*ms {
		t.Fatalf("an hour later, a batch 2ms late: %v, want 2ms", got)
	}
}
