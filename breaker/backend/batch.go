package backend

import "time"

// Batch is a run of outcomes one instance saw under one generation, as
// counts, with their order as far as the consecutive-failures policy needs it.
type Batch struct {
	Successes, Failures uint64
	Slow                uint64 // calls (successes or failures) that were slow
	// Lead counts the failures before the first success, Trail those after
	// the last one (both are Failures when there is no success), and Run
	// the longest run of failures between two successes.
	Lead, Trail, Run uint64
	// SuccessAge is how long ago the last success happened, and
	// FailureAge the first of the trailing failures (all failures when
	// there is no success), at Measured: a store orders the batch against
	// other instances' outcomes by them.
	SuccessAge, FailureAge time.Duration
	// OldestAge is how long ago the batch's first outcome happened, at
	// Measured (0: unknown): how late the batch is.
	OldestAge time.Duration
	// Measured is when the ages were taken (zero: they are taken as of
	// when the batch is sent). A store adds the time since then, so that a
	// batch that waited, or is sent again after a timeout, keeps the times
	// of its outcomes.
	Measured time.Time
	// Settle is how late after its outcomes a batch may arrive (the flush
	// interval, more while the sending process delivers its batches later
	// than that; 0 for outcomes reported one by one): failures count
	// towards a trip only once they are this old, so that a success
	// reported late can still end their run.
	Settle time.Duration
}

// Add appends one outcome to b: a failure when failure is set, else a
// success; slow says that the call was slow. It leaves the ages alone.
func (b *Batch) Add(failure, slow bool) {
	if failure {
		if b.Successes == 0 {
			b.Lead++
		}
		b.Failures++
		b.Trail++
	} else {
		if b.Successes > 0 {
			b.Run = max(b.Run, b.Trail)
		}
		b.Successes++
		b.Trail = 0
	}
	if slow {
		b.Slow++
	}
}

// Append appends the outcomes of c, which happened after b's.
func (b *Batch) Append(c Batch) {
	if c.Successes+c.Failures == 0 {
		return
	}
	if !b.Measured.IsZero() && !c.Measured.IsZero() {
		// b's ages, as of when c's were taken
		d := c.Measured.Sub(b.Measured)
		b.SuccessAge += d
		b.FailureAge += d
		b.OldestAge += d
	}
	b.Measured = c.Measured
	if b.Successes+b.Failures == 0 {
		b.OldestAge = c.OldestAge
	}
	switch {
	case b.Successes == 0 && c.Successes == 0:
		b.Lead += c.Failures
		b.Trail += c.Failures
	case b.Successes == 0:
		b.Lead += c.Lead
		b.Trail = c.Trail
		b.Run = c.Run
	case c.Successes == 0:
		b.Trail += c.Failures
	default:
		b.Run = max(b.Run, b.Trail+c.Lead, c.Run)
		b.Trail = c.Trail
	}
	b.Successes += c.Successes
	b.Failures += c.Failures
	b.Slow += c.Slow
	if c.Successes > 0 {
		b.SuccessAge = c.SuccessAge
	}
	if c.Successes > 0 || b.Trail == c.Failures {
		b.FailureAge = c.FailureAge
	}
	b.Settle = max(b.Settle, c.Settle)
}

// Ages returns SuccessAge and FailureAge as of now.
func (b Batch) Ages(now time.Time) (success, failure time.Duration) {
	d := b.since(now)
	return b.SuccessAge + d, b.FailureAge + d
}

// Age returns OldestAge as of now.
func (b Batch) Age(now time.Time) time.Duration { return b.OldestAge + b.since(now) }

// since is how long before now the ages were measured (0 when unknown).
func (b Batch) since(now time.Time) time.Duration {
	if b.Measured.IsZero() {
		return 0
	}
	return max(0, now.Sub(b.Measured))
}

// Len returns how many outcomes b counts.
func (b Batch) Len() uint64 { return b.Successes + b.Failures }
