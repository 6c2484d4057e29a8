package retry

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Event describes one attempt, or one refusal by the gate, for Policy.OnEvent.
type Event struct {
	// Name is the Policy's Name.
	Name string
	// Attempt is the number of the attempt, 1 for the first. For a gate
	// refusal it is the attempt that was not made.
	Attempt int
	// MaxAttempts is the Policy's effective MaxAttempts.
	MaxAttempts int
	// Err is the attempt's error (nil on success), or the gate's refusal.
	Err error
	// Kind classifies Err.
	Kind Kind
	// Backoff is the wait before the next attempt, or before the gate is
	// asked again; 0 when WillRetry is false.
	Backoff time.Duration
	// WillRetry reports whether another attempt (or gate check) follows.
	WillRetry bool
	// RetryAfter is the wait that Err asked for (a Retry-After header or a
	// gate's time until its next probe) before capping; 0 when unknown.
	RetryAfter time.Duration
	// Elapsed is the time since Do started.
	Elapsed time.Duration
	// GateRefused reports that Err is the gate's refusal and no attempt was
	// made.
	GateRefused bool
}

// Do calls fn until it succeeds or p says to stop, and returns fn's last
// result and error.
//
// Before every attempt, the first included, Do asks p.Gate; when it refuses,
// Do returns at once without calling fn (unless p.WaitForGate applies) with an
// *Error of ReasonGate, which matches ErrExhausted and the gate's error and
// says when the gate expects to allow an attempt. The Budget's OnRequest is
// called once, before the first attempt fn actually runs.
//
// After a failed attempt Do stops:
//   - when ctx is done, with an error wrapping ctx.Err() (and the attempt's
//     error), which does not match ErrExhausted;
//   - when the error is not retryable (see Policy.Retryable), with that error
//     as fn returned it;
//   - when MaxAttempts attempts were made, MaxElapsed has passed, or the
//     Budget refuses the retry, with an *Error matching ErrExhausted (and
//     ErrBudget for the budget) that wraps the attempt's error;
//   - when the wait before the next attempt would end at or after ctx's
//     deadline, at once, with an *Error of ReasonDeadline; and when an error
//     asked for a wait (Retry-After) that would end after MaxElapsed, at
//     once, with an *Error of ReasonElapsed. Both match ErrExhausted, and
//     the last attempt's result is returned with them, without sleeping.
//
// Otherwise it waits and tries again. The wait is the jittered exponential
// backoff (see Jitter), multiplied by RateLimitFactor after a 429; when an
// error in the chain says how long to wait (a *StatusError's RetryAfter, or
// a RetryAfter() time.Duration method), that wait is used instead. Every wait
// is capped by MaxDelay; a backoff of Do's own is shortened to end by
// MaxElapsed. Waits are measured on p.Clock (ctx's deadline on the system
// clock) and end early when ctx is done.
//
// On failure the returned T is whatever the last attempt returned (the zero
// value when none ran). An invalid p gives a *PolicyError and no attempt.
func Do[T any](ctx context.Context, p Policy, fn func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	if ctx == nil {
		return zero, errors.New("retry: Do called with a nil context")
	}
	if fn == nil {
		return zero, errors.New("retry: Do called with a nil function")
	}
	s, err := p.resolve()
	if err != nil {
		return zero, err
	}
	start := s.now()
	var (
		last      T
		lastErr   error
		prev      time.Duration // previous backoff, for decorrelated jitter
		requested bool
	)
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return last, ctxError(s.Name, err, attempt-1, lastErr)
		}
		if s.Gate != nil {
			if err := s.askGate(ctx, start, attempt, lastErr); err != nil {
				return last, err
			}
		}
		if s.Budget != nil && !requested {
			s.Budget.OnRequest()
			requested = true
		}

		last, lastErr = fn(ctx)
		ev := Event{
			Name:        s.Name,
			Attempt:     attempt,
			MaxAttempts: s.MaxAttempts,
			Err:         lastErr,
			Kind:        KindOf(lastErr),
		}
		if lastErr == nil {
			ev.Elapsed = s.since(start)
			s.emit(ev)
			return last, nil
		}
		ev.RetryAfter, _ = retryAfter(lastErr)
		stop := func(reason Reason) (T, error) {
			ev.Elapsed = s.since(start)
			s.emit(ev)
			return last, &Error{Name: s.Name, Reason: reason, Attempts: attempt, Last: lastErr, Elapsed: ev.Elapsed}
		}
		stopWaiting := func(reason Reason, wait time.Duration) (T, error) {
			ev.Elapsed = s.since(start)
			s.emit(ev)
			return last, &Error{Name: s.Name, Reason: reason, Attempts: attempt, Last: lastErr, Elapsed: ev.Elapsed, Wait: wait}
		}

		if err := ctx.Err(); err != nil {
			ev.Elapsed = s.since(start)
			s.emit(ev)
			return last, ctxError(s.Name, err, attempt, lastErr)
		}
		if !s.shouldRetry(lastErr) {
			ev.Elapsed = s.since(start)
			s.emit(ev)
			return last, lastErr
		}
		if attempt >= s.MaxAttempts {
			return stop(ReasonAttempts)
		}
		elapsed := s.since(start)
		if s.MaxElapsed > 0 && elapsed >= s.MaxElapsed {
			return stop(ReasonElapsed)
		}
		b := s.backoff(attempt, prev, s.rand())
		prev = b
		wait := b
		switch {
		case ev.RetryAfter > 0:
			wait = min(ev.RetryAfter, s.MaxDelay)
		case ev.Kind == KindRateLimit:
			wait = scale(b, s.RateLimitFactor, s.MaxDelay)
		}
		if s.MaxElapsed > 0 && wait > s.MaxElapsed-elapsed { // (elapsed+wait may overflow)
			if ev.RetryAfter > 0 {
				// The error asked for a wait that MaxElapsed cannot give:
				// an earlier attempt would go against it.
				return stopWaiting(ReasonElapsed, wait)
			}
			wait = s.MaxElapsed - elapsed
		}
		if deadline, ok := ctx.Deadline(); ok && wait > 0 && wait >= time.Until(deadline) {
			// No attempt can start after the wait: say so now, with the
			// last result, rather than sleep until the deadline.
			return stopWaiting(ReasonDeadline, wait)
		}
		// The budget is asked last, so that a retry it pays for is made.
		if s.Budget != nil && !s.Budget.AllowRetry(ctx) {
			if err := ctx.Err(); err != nil {
				ev.Elapsed = s.since(start)
				s.emit(ev)
				return last, ctxError(s.Name, err, attempt, lastErr)
			}
			return stop(ReasonBudget)
		}
		ev.WillRetry = true
		ev.Backoff = wait
		ev.Elapsed = elapsed
		s.emit(ev)
		if err := s.sleep(ctx, wait); err != nil {
			return last, ctxError(s.Name, err, attempt, lastErr)
		}
	}
}

// askGate asks the gate whether attempt may start, waiting for it when
// WaitForGate allows, and returns nil when it may.
func (s *settings) askGate(ctx context.Context, start time.Time, attempt int, lastErr error) error {
	for {
		refusal := s.Gate.Check(ctx)
		if refusal == nil {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return ctxError(s.Name, err, attempt-1, lastErr)
		}
		d, known := retryAfter(refusal)
		elapsed := s.since(start)
		wait := s.WaitForGate && known && d <= s.MaxElapsed-elapsed // (elapsed+d may overflow)
		if deadline, ok := ctx.Deadline(); ok && wait && d >= time.Until(deadline) {
			// No attempt can start after the wait: say so now, with the
			// gate's refusal, rather than sleep until the deadline.
			wait = false
		}
		ev := Event{
			Name:        s.Name,
			Attempt:     attempt,
			MaxAttempts: s.MaxAttempts,
			Err:         refusal,
			Kind:        KindOf(refusal),
			WillRetry:   wait,
			RetryAfter:  d,
			Elapsed:     elapsed,
			GateRefused: true,
		}
		if !wait {
			s.emit(ev)
			return &Error{
				Name:       s.Name,
				Reason:     ReasonGate,
				Attempts:   attempt - 1,
				Last:       lastErr,
				Gate:       refusal,
				RetryAfter: d,
				Elapsed:    elapsed,
			}
		}
		ev.Backoff = d
		s.emit(ev)
		if err := s.sleep(ctx, d); err != nil {
			return ctxError(s.Name, err, attempt-1, lastErr)
		}
	}
}

// shouldRetry applies Permanent/Transient marks, then the Retryable predicate.
func (s *settings) shouldRetry(err error) bool {
	if r, ok := mark(err); ok {
		return r
	}
	return s.retryable(err)
}

func (s *settings) emit(ev Event) {
	if s.OnEvent != nil {
		s.OnEvent(ev)
	}
}

func (s *settings) now() time.Time {
	if s.Clock == nil {
		return time.Now()
	}
	return s.Clock.Now()
}

func (s *settings) since(start time.Time) time.Duration {
	return s.now().Sub(start)
}

// sleep waits d on the policy's clock, returning ctx's error if it is done
// first. With the real clock the timer is stopped early so that an abandoned
// wait holds nothing.
func (s *settings) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	var fired <-chan time.Time
	if s.Clock == nil {
		t := time.NewTimer(d)
		defer t.Stop()
		fired = t.C
	} else {
		fired = s.Clock.After(d)
	}
	select {
	case <-fired:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ctxError wraps the context's error, and the last attempt's error if any.
func ctxError(name string, ctxErr error, attempts int, last error) error {
	prefix := "retry: "
	if name != "" {
		prefix += name + ": "
	}
	if last == nil {
		return fmt.Errorf("%sstopped after %s: %w", prefix, plural(attempts, "attempt"), ctxErr)
	}
	return fmt.Errorf("%sstopped after %s: %w; last error: %w", prefix, plural(attempts, "attempt"), ctxErr, last)
}
