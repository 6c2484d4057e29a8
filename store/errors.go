package store

import (
	"fmt"
	"strings"
)

// wrapError is an error of the package wrapped with what was being done:
// its message says "store:" once, however deep the error it wraps.
type wrapError struct {
	msg string
	err error
}

func (e *wrapError) Error() string {
	return e.msg + ": " + strings.TrimPrefix(e.err.Error(), "store: ")
}

func (e *wrapError) Unwrap() error { return e.err }

// wrapf returns err wrapped with the message format says, which should
// start with "store: ".
func wrapf(err error, format string, args ...any) error {
	return &wrapError{msg: fmt.Sprintf(format, args...), err: err}
}
