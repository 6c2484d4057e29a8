package breaker

import (
	circuitbreaker "github.com/mercari/go-circuitbreaker"
)

// Ignore marks err so that a breaker does not count the call at all: neither
// a success nor a failure (a half-open probe gives its place back). Use it
// for errors that say nothing about the dependency's health, such as a
// request the caller got wrong. The result wraps err (errors.Is and
// errors.As see through it) and has the same message. Ignore(nil) is nil.
//
// Ignore and MarkSuccess are decided before Settings.Classify, which is not
// asked about a marked error; when marks are nested, the outermost counts.
// The markers of github.com/mercari/go-circuitbreaker (Ignore,
// MarkAsSuccess) are honoured the same way.
func Ignore(err error) error {
	if err == nil {
		return nil
	}
	return &markedError{err: err, outcome: Ignored}
}

// MarkSuccess marks err so that a breaker counts the call as a success,
// although it returned an error: the dependency answered, and the error is
// the answer (say, "not found"). The result wraps err and has the same
// message. MarkSuccess(nil) is nil. See Ignore for how marks are decided.
func MarkSuccess(err error) error {
	if err == nil {
		return nil
	}
	return &markedError{err: err, outcome: Success}
}

// markedError is an error marked by Ignore or MarkSuccess.
type markedError struct {
	err     error
	outcome Outcome
}

func (m *markedError) Error() string { return m.err.Error() }
func (m *markedError) Unwrap() error { return m.err }

// markedOutcome returns the outcome that the outermost mark on err's chain
// asks for: Breakwater's (Ignore, MarkSuccess) or go-circuitbreaker's
// (*IgnorableError, *SuccessMarkableError). It reports false when err
// carries no mark.
func markedOutcome(err error) (Outcome, bool) {
	var (
		o     Outcome
		found bool
	)
	walk(err, func(e error) bool {
		switch m := e.(type) {
		case *markedError:
			o, found = m.outcome, true
		case *circuitbreaker.IgnorableError:
			o, found = Ignored, true
		case *circuitbreaker.SuccessMarkableError:
			o, found = Success, true
		}
		return found
	})
	return o, found
}

// walk visits err's chain depth first, as errors.As does, until visit
// returns true. It reports whether it stopped early.
func walk(err error, visit func(error) bool) bool {
	for err != nil {
		if visit(err) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if walk(e, visit) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}
