package retry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"
)

// Permanent marks err as not retryable: Do returns it after the attempt that
// produced it, whatever the Policy's Retryable says. The result wraps err
// (errors.Is and errors.As see through it) and has the same message.
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &marked{err: err, permanent: true}
}

// Transient marks err as retryable, whatever the Policy's Retryable says; the
// other limits (attempts, MaxElapsed, gate, budget, ctx) still apply. The
// result wraps err and has the same message. Transient(nil) is nil.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &marked{err: err, permanent: false}
}

type marked struct {
	err       error
	permanent bool
}

func (m *marked) Error() string { return m.err.Error() }
func (m *marked) Unwrap() error { return m.err }

// mark returns the outermost Permanent or Transient mark on err's chain.
func mark(err error) (retryable, ok bool) {
	var m *marked
	if errors.As(err, &m) {
		return !m.permanent, true
	}
	return false, false
}

// DefaultRetryable is the default Policy.Retryable. It reports whether err is
// worth another attempt. The rules, first match wins:
//
//   - nil: false.
//   - Marked with Permanent: false; marked with Transient: true (the outermost
//     mark counts).
//   - Matching ErrExhausted (a nested Do gave up): false, so retry layers do
//     not multiply each other's attempts.
//   - *StatusError: its Retryable method (408, 429, 5xx except 500, 501,
//     505 and 511; see RetryableStatus).
//   - TLS certificate and handshake errors (x509.UnknownAuthorityError,
//     x509.CertificateInvalidError, x509.HostnameError,
//     *tls.CertificateVerificationError, tls.AlertError,
//     tls.RecordHeaderError) and address or protocol errors
//     (*net.AddrError, net.UnknownNetworkError, http.ErrSchemeMismatch):
//     false.
//   - context.Canceled: false. (Do itself stops, with the context's error,
//     when the caller's ctx is done; a bare Canceled comes from elsewhere.)
//   - context.DeadlineExceeded: true. This is a per-attempt timeout; the
//     caller's own deadline is caught by Do before Retryable is asked.
//   - *net.DNSError: true when IsTimeout or IsTemporary, false when
//     IsNotFound; otherwise the unknown-error rule.
//   - syscall.ECONNREFUSED, ECONNRESET, ECONNABORTED, EPIPE, ETIMEDOUT: true.
//   - A net.Error whose Timeout() is true: true.
//   - io.EOF, io.ErrUnexpectedEOF (a connection closed mid-exchange): true.
//   - Anything else: true. Unknown errors are retried, because most errors
//     that reach a retry loop around a remote call are transient and the
//     attempt limit, MaxElapsed, the budget and the gate bound the cost of
//     being wrong. Mark known-permanent errors with Permanent, or wrap
//     DefaultRetryable, to say otherwise.
func DefaultRetryable(err error) bool {
	if err == nil {
		return false
	}
	if r, ok := mark(err); ok {
		return r
	}
	if errors.Is(err, ErrExhausted) {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Retryable()
	}
	if isPermanentTransportError(err) {
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		switch {
		case dns.IsTimeout || dns.IsTemporary:
			return true
		case dns.IsNotFound:
			return false
		}
	}
	// Connection errors, timeouts, EOF and unknown errors are all retried.
	return true
}

// isPermanentTransportError reports TLS certificate, handshake and address
// errors, which the same request will meet again.
func isPermanentTransportError(err error) bool {
	var (
		unknownAuthority x509.UnknownAuthorityError
		invalidCert      x509.CertificateInvalidError
		hostname         x509.HostnameError
		verification     *tls.CertificateVerificationError
		alert            tls.AlertError
		recordHeader     tls.RecordHeaderError
		addr             *net.AddrError
		unknownNetwork   net.UnknownNetworkError
	)
	return errors.As(err, &unknownAuthority) ||
		errors.As(err, &invalidCert) ||
		errors.As(err, &hostname) ||
		errors.As(err, &verification) ||
		errors.As(err, &alert) ||
		errors.As(err, &recordHeader) ||
		errors.As(err, &addr) ||
		errors.As(err, &unknownNetwork) ||
		errors.Is(err, http.ErrSchemeMismatch)
}

// Kind is a coarse class of failure, reported in events for operators.
type Kind int

// The kinds of failure.
const (
	// KindOther is any failure not covered by the other kinds, including
	// HTTP errors other than 408, 429 and 504, and gate refusals.
	KindOther Kind = iota
	// KindConnection is a failure to connect or a connection lost:
	// refused, reset, aborted, broken pipe, closed early (EOF), or a DNS
	// lookup failure.
	KindConnection
	// KindTimeout is a timeout: a net.Error with Timeout(), an expired
	// per-attempt context, ETIMEDOUT, or HTTP 408 or 504.
	KindTimeout
	// KindRateLimit is a rate-limit refusal: HTTP 429.
	KindRateLimit
)

// String returns the kind's lower-case name: "other", "connection",
// "timeout" or "rate_limit".
func (k Kind) String() string {
	switch k {
	case KindOther:
		return "other"
	case KindConnection:
		return "connection"
	case KindTimeout:
		return "timeout"
	case KindRateLimit:
		return "rate_limit"
	default:
		return "Kind(" + strconv.Itoa(int(k)) + ")"
	}
}

// KindOf classifies err into a Kind; nil is KindOther.
func KindOf(err error) Kind {
	if err == nil {
		return KindOther
	}
	var se *StatusError
	if errors.As(err, &se) {
		switch se.StatusCode {
		case http.StatusTooManyRequests:
			return KindRateLimit
		case http.StatusRequestTimeout, http.StatusGatewayTimeout:
			return KindTimeout
		default:
			return KindOther
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ETIMEDOUT) {
		return KindTimeout
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		if dns.IsTimeout {
			return KindTimeout
		}
		return KindConnection
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return KindTimeout
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return KindConnection
	}
	return KindOther
}

// retryAfter returns the wait that an error in err's chain asks for: a
// *StatusError's positive RetryAfter field, or the positive result of a
// RetryAfter() time.Duration method.
func retryAfter(err error) (time.Duration, bool) {
	if err == nil {
		return 0, false
	}
	var se *StatusError
	if errors.As(err, &se) && se.RetryAfter > 0 {
		return se.RetryAfter, true
	}
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		if d := ra.RetryAfter(); d > 0 {
			return d, true
		}
	}
	return 0, false
}
