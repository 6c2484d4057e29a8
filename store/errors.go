package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrDenied is matched by errors of a Redis that refused the client's
// credentials (WRONGPASS, NOAUTH) or whose ACL denies a command, key or
// channel the store needs (NOPERM). Such errors are a matter of
// configuration, which no retry fixes. A refused login matches
// ErrUnavailable too: the store cannot use Redis at all and fails fast as in
// any outage. A NOPERM reply does not: Redis answered.
var ErrDenied = errors.New("store: redis denied access")

// Error is the error of a Redis call that failed: it says the cause in
// words ("connection refused", "no such host", "authentication failed",
// "TLS handshake failed", "timeout", "loading its dataset", ...) and
// matches ErrUnavailable, ErrDenied or ErrCorrupt as the cause says, and
// the underlying error (syscall.ECONNREFUSED, *net.DNSError, a
// *tls.CertificateVerificationError, context.DeadlineExceeded, ...). Its
// message never contains the password of the client's options.
type Error struct {
	// Cause says in a few words why the call failed.
	Cause string
	// FailingFast is set on the errors of calls that were not sent: the
	// store failed fast because Redis had not answered since Cause.
	FailingFast bool

	kinds  []error // ErrUnavailable, ErrDenied, ErrCorrupt
	err    error
	detail string // err's message with secrets removed
}

// Error returns a message such as "store: redis unavailable: connection
// refused: dial tcp 127.0.0.1:6390: connect: connection refused".
func (e *Error) Error() string {
	var b strings.Builder
	if len(e.kinds) > 0 {
		b.WriteString(e.kinds[0].Error())
		if e.Cause != "" {
			b.WriteString(": ")
		}
	}
	b.WriteString(e.Cause)
	if e.detail != "" && e.detail != e.Cause {
		b.WriteString(": ")
		b.WriteString(e.detail)
	}
	if e.FailingFast {
		b.WriteString(" (failing fast until redis answers)")
	}
	return b.String()
}

// Unwrap returns the sentinels the error matches and the underlying error.
func (e *Error) Unwrap() []error {
	return append(append([]error(nil), e.kinds...), e.err)
}

// fast returns e as the error of a call that failed fast.
func (e *Error) fast() *Error {
	f := *e
	f.FailingFast = true
	return &f
}

// outage reports whether e is Redis being away or not serving, which the
// health breaker waits out.
func (e *Error) outage() bool {
	for _, k := range e.kinds {
		if k == ErrUnavailable {
			return true
		}
	}
	return false
}

// auth reports whether e is a refused login, which no probe fixes.
func (e *Error) auth() bool { return e.Cause == causeAuth }

const causeAuth = "authentication failed"

// describe sorts err, the error of a Redis call bounded by timeout, by its
// cause, and returns it as an *Error that names the cause, or err itself
// when it is a reply of Redis that says nothing about its health (a script
// error, say). secrets are removed from the message.
func describe(err error, timeout time.Duration, secrets []string) error {
	cause, kind := classify(err, timeout)
	if kind == nil {
		return err
	}
	msg := err.Error()
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, "[redacted]")
	}
	kinds := []error{kind}
	if cause == causeAuth {
		kinds = append(kinds, ErrUnavailable)
	}
	return &Error{Cause: cause, kinds: kinds, err: err, detail: msg}
}

// replyCauses are the error replies of a Redis that is reachable but not
// serving, with their causes.
var replyCauses = []struct{ prefix, cause string }{
	{"LOADING", "redis is loading its dataset"},
	{"BUSY", "redis is busy running a script"},
	{"CLUSTERDOWN", "the cluster is down"},
	{"TRYAGAIN", "the cluster is moving the slot (TRYAGAIN)"},
	{"MASTERDOWN", "the replica lost its master"},
	{"READONLY", "connected to a replica (READONLY)"},
	{"MOVED", "the slot moved to another node"},
	{"ASK ", "the slot is moving to another node"},
}

// classify returns err's cause and the sentinel it matches, or a nil one for a
// reply that says nothing of Redis's health or access.
func classify(err error, timeout time.Duration) (cause string, kind error) {
	var rerr redis.Error
	if errors.As(err, &rerr) && !errors.Is(err, context.DeadlineExceeded) {
		msg := rerr.Error()
		switch {
		case strings.HasPrefix(msg, "WRONGPASS"), strings.HasPrefix(msg, "NOAUTH"),
			strings.Contains(msg, "invalid username-password pair"),
			strings.Contains(msg, "unauthenticated"): // a long command before AUTH
			return causeAuth, ErrDenied
		case strings.HasPrefix(msg, "NOPERM"), strings.Contains(msg, "NOPERM "),
			strings.Contains(msg, "user executing the script can't"): // a command in a script
			return "denied by the ACL (NOPERM)", ErrDenied
		case isCorrupt(err):
			return "", nil
		}
		for _, rc := range replyCauses {
			if strings.HasPrefix(msg, rc.prefix) {
				return rc.cause, ErrUnavailable
			}
		}
		return "", nil
	}
	var (
		dnsErr   *net.DNSError
		certErr  *tls.CertificateVerificationError
		authErr  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		invalid  x509.CertificateInvalidError
		recErr   tls.RecordHeaderError
		alertErr tls.AlertError
		netErr   net.Error
	)
	switch {
	case errors.As(err, &certErr), errors.As(err, &authErr), errors.As(err, &hostErr),
		errors.As(err, &invalid), errors.As(err, &recErr), errors.As(err, &alertErr),
		strings.Contains(err.Error(), "tls: "):
		return "TLS handshake failed", ErrUnavailable
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused", ErrUnavailable
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return "no such host", ErrUnavailable
	case errors.As(err, &dnsErr):
		return "host name lookup failed", ErrUnavailable
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection lost", ErrUnavailable
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timeout: no answer within " + timeout.String(), ErrUnavailable
	case errors.Is(err, redis.ErrClosed):
		return "the redis client is closed", ErrUnavailable
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return "network unreachable", ErrUnavailable
	}
	return "unreachable", ErrUnavailable
}

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
