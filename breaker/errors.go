package breaker

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrOpen is matched (with errors.Is) by the error a breaker returns
	// when it rejects a call: open, forced open, half-open with every probe
	// place taken, or failing closed while its store is unreachable.
	ErrOpen = errors.New("breaker: circuit open")
	// ErrInvalidSettings is matched by the errors of New for bad arguments.
	ErrInvalidSettings = errors.New("breaker: invalid settings")
	// ErrClosed is returned by calls on a breaker after Close.
	ErrClosed = errors.New("breaker: closed")
)

// OpenError is the error of a rejected call. It matches ErrOpen.
type OpenError struct {
	Name       string
	State      State
	Generation int64
	// NextProbeIn is how long until a probe may run; zero when unknown
	// (forced open, or decided locally while the store is unreachable).
	NextProbeIn time.Duration
	// Local is set when the call was rejected by the local fallback while
	// the store was unreachable.
	Local bool
}

// Error says which breaker rejected the call and when the next probe is due.
func (e *OpenError) Error() string {
	switch {
	case e.Local:
		return fmt.Sprintf("breaker %q: circuit open (decided locally: store unreachable)", e.Name)
	case e.State == ForcedOpen:
		return fmt.Sprintf("breaker %q: circuit forced open", e.Name)
	case e.State == HalfOpen:
		return fmt.Sprintf("breaker %q: circuit half-open, probe in progress (next place in %v)", e.Name, e.NextProbeIn.Round(time.Millisecond))
	}
	return fmt.Sprintf("breaker %q: circuit open (next probe in %v)", e.Name, e.NextProbeIn.Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrOpen) true.
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// RetryAfter returns NextProbeIn; retry policies wait this long.
func (e *OpenError) RetryAfter() time.Duration { return e.NextProbeIn }

// SettingsError reports an invalid argument to New. It matches ErrInvalidSettings.
type SettingsError struct {
	Field  string
	Value  any
	Reason string
}

// Error names the field, its value and what was wanted.
func (e *SettingsError) Error() string {
	return fmt.Sprintf("breaker: invalid settings: %s = %v: %s", e.Field, e.Value, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidSettings) true.
func (e *SettingsError) Is(target error) bool { return target == ErrInvalidSettings }

// PanicError is the failure recorded when the protected function panics;
// Execute re-raises the panic after recording it.
type PanicError struct{ Value any }

// Error describes the panic.
func (e *PanicError) Error() string {
	return fmt.Sprintf("breaker: protected function panicked: %v", e.Value)
}
