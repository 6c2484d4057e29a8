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

// TestLatenessUsual: usual is the excess that 9 in 10 of the last timed
// batches kept within; a batch sent sooner than its wait says nothing, and
// neither does one delivered more than usualMemory ago.
func TestLatenessUsual(t *testing.T) {
	const ms = time.Millisecond
	t0 := time.Unix(1000, 0)
	var l lateBy
	if got := l.usual(t0); got != 0 {
		t.Fatalf("no batch: usual %v, want 0", got)
	}
	l.timed(ms, 4*ms, t0) // sent sooner: not a sample
	if got := l.usual(t0); got != 0 {
		t.Fatalf("after a batch sent sooner: usual %v, want 0", got)
	}
	for i := 1; i <= 100; i++ {
		l.timed(4*ms+time.Duration(i)*100*time.Microsecond, 4*ms, t0) // late by 0.1 ms .. 10 ms
	}
	if got := l.usual(t0.Add(ms)); got != 9*ms {
		t.Fatalf("late by 0.1..10 ms: usual %v, want 9ms", got)
	}
	if got := l.usual(t0.Add(usualMemory)); got != 0 {
		t.Fatalf("%v later: usual %v, want 0", usualMemory, got)
	}
	for i := 0; i < lateSamples; i++ {
		l.timed(5*ms, 4*ms, t0.Add(ms))
	}
	if got := l.usual(t0.Add(2 * ms)); got != ms {
		t.Fatalf("the last %d late by 1 ms: usual %v, want 1ms", lateSamples, got)
	}
}
