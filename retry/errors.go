package retry

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrExhausted is matched (with errors.Is) by every error Do returns when it
// stops retrying for a reason of its own: attempts used up, MaxElapsed reached,
// the gate refused, the retry budget refused, or the next attempt would start
// past ctx's deadline. An error the operation returned
// that is not retryable, and a cancelled context, do not match it.
var ErrExhausted = errors.New("retry: retries exhausted")

// ErrBudget is matched, in addition to ErrExhausted, by the error Do returns
// when the Policy's Budget refused a retry.
var ErrBudget = errors.New("retry: retry budget exhausted")

// ErrInvalidPolicy is matched by the *PolicyError that Policy.Validate and Do
// return for a Policy with a bad field.
var ErrInvalidPolicy = errors.New("retry: invalid policy")

// Reason says why Do stopped retrying.
type Reason int

// The reasons carried by *Error.
const (
	// ReasonAttempts means MaxAttempts attempts were made.
	ReasonAttempts Reason = iota + 1
	// ReasonElapsed means MaxElapsed had passed when another attempt was due.
	ReasonElapsed
	// ReasonGate means the Gate refused the next attempt.
	ReasonGate
	// ReasonBudget means the Budget refused the next retry.
	ReasonBudget
	// ReasonDeadline means the wait before the next attempt would have
	// ended at or after ctx's deadline (an http.Client's Timeout, say): Do
	// stops at once with the last attempt's result instead of sleeping
	// until the deadline.
	ReasonDeadline
)

// String returns a short lower-case name for r, such as "max attempts".
func (r Reason) String() string {
	switch r {
	case ReasonAttempts:
		return "max attempts"
	case ReasonElapsed:
		return "max elapsed"
	case ReasonGate:
		return "gate refused"
	case ReasonBudget:
		return "budget"
	case ReasonDeadline:
		return "deadline"
	default:
		return "Reason(" + strconv.Itoa(int(r)) + ")"
	}
}

// Error is the error Do returns when it gives up for one of the Reasons. It
// matches ErrExhausted, and ErrBudget too when Reason is ReasonBudget. Unwrap
// returns the last attempt's error and, for ReasonGate, the gate's error, so
// errors.Is and errors.As see both (errors.Is(err, breaker.ErrOpen) holds when
// an open breaker refused).
type Error struct {
	// Name is the Policy's Name.
	Name string
	// Reason says why retrying stopped.
	Reason Reason
	// Attempts is the number of attempts made; 0 when the gate refused the first.
	Attempts int
	// Last is the error of the last attempt made, nil when none was made.
	Last error
	// Gate is the gate's refusal when Reason is ReasonGate, else nil.
	Gate error
	// RetryAfter is, for ReasonGate, how long the gate said it would be until
	// an attempt may start (the time until a breaker's next probe); 0 when the
	// gate did not say.
	RetryAfter time.Duration
	// Elapsed is the time from the start of Do until it gave up.
	Elapsed time.Duration
	// Wait is, for ReasonDeadline, the wait before the next attempt that
	// would have ended past ctx's deadline, and for ReasonElapsed, a wait
	// that an error asked for (a Retry-After) that would have ended past
	// MaxElapsed; otherwise 0.
	Wait time.Duration
}

// Error describes why retrying stopped, after how many attempts, and the
// errors involved.
func (e *Error) Error() string {
	prefix := "retry: "
	if e.Name != "" {
		prefix += e.Name + ": "
	}
	var msg string
	switch e.Reason {
	case ReasonAttempts:
		msg = fmt.Sprintf("gave up after %s", plural(e.Attempts, "attempt"))
	case ReasonElapsed:
		msg = fmt.Sprintf("max elapsed time reached after %s in %v", plural(e.Attempts, "attempt"), round(e.Elapsed))
		if e.Wait > 0 {
			msg += fmt.Sprintf(" (the next attempt was due in %v)", round(e.Wait))
		}
	case ReasonDeadline:
		msg = fmt.Sprintf("gave up after %s: the next attempt, due in %v, would start past the context's deadline",
			plural(e.Attempts, "attempt"), round(e.Wait))
	case ReasonGate:
		msg = fmt.Sprintf("gate refused attempt %d", e.Attempts+1)
		if e.RetryAfter > 0 {
			msg += fmt.Sprintf(" (next attempt possible in %v)", round(e.RetryAfter))
		}
		if e.Gate != nil {
			msg += ": " + e.Gate.Error()
		}
		if e.Last != nil {
			msg += "; last error: " + e.Last.Error()
		}
		return prefix + msg
	case ReasonBudget:
		msg = fmt.Sprintf("retry budget exhausted after %s", plural(e.Attempts, "attempt"))
	default:
		msg = fmt.Sprintf("stopped (%v) after %s", e.Reason, plural(e.Attempts, "attempt"))
	}
	if e.Last != nil {
		msg += ": " + e.Last.Error()
	}
	return prefix + msg
}

// Unwrap returns the last attempt's error and the gate's error, leaving out
// whichever is nil.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, 2)
	if e.Last != nil {
		errs = append(errs, e.Last)
	}
	if e.Gate != nil {
		errs = append(errs, e.Gate)
	}
	return errs
}

// Is reports whether target is ErrExhausted, or ErrBudget when the budget
// refused.
func (e *Error) Is(target error) bool {
	return target == ErrExhausted || (target == ErrBudget && e.Reason == ReasonBudget)
}

// PolicyError reports a Policy field with a bad value. It matches
// ErrInvalidPolicy.
type PolicyError struct {
	// Field is the name of the offending Policy field.
	Field string
	// Value is the field's value, as given.
	Value any
	// Problem says what is wrong with it.
	Problem string
}

// Error names the field, its value and the problem.
func (e *PolicyError) Error() string {
	return fmt.Sprintf("retry: invalid policy: %s %v: %s", e.Field, e.Value, e.Problem)
}

// Is reports whether target is ErrInvalidPolicy.
func (e *PolicyError) Is(target error) bool { return target == ErrInvalidPolicy }

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// round rounds d for a message: to the millisecond, or to the microsecond
// below a millisecond, so that messages never print 996.298964ms.
func round(d time.Duration) time.Duration {
	if d > -time.Millisecond && d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(time.Millisecond)
}
