package retry

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// StatusError is an HTTP response status treated as an error, for retrying
// HTTP calls. DefaultRetryable classifies it by StatusCode (see
// RetryableStatus) and KindOf reports 429 as KindRateLimit and 408 and 504 as
// KindTimeout.
type StatusError struct {
	// StatusCode is the response's status code.
	StatusCode int
	// RetryAfter is the wait the response's Retry-After header asked for
	// (see ParseRetryAfter). When positive, Do waits that long before the
	// next attempt (capped by MaxDelay and the remaining MaxElapsed) instead
	// of its own backoff. Zero means the response gave none, or asked for no
	// wait; the policy's backoff then applies, lengthened by RateLimitFactor
	// for a 429.
	RetryAfter time.Duration
}

// Error returns a message such as "retry: HTTP 503 Service Unavailable (retry
// after 2s)".
func (e *StatusError) Error() string {
	msg := "retry: HTTP " + strconv.Itoa(e.StatusCode)
	if text := http.StatusText(e.StatusCode); text != "" {
		msg += " " + text
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %v)", round(e.RetryAfter))
	}
	return msg
}

// Retryable reports whether the status is worth another attempt; see
// RetryableStatus.
func (e *StatusError) Retryable() bool { return RetryableStatus(e.StatusCode) }

// RetryableStatus reports whether an HTTP response with the given status code
// is worth another attempt:
//
//   - 408 Request Timeout, 429 Too Many Requests: yes.
//   - Other 4xx: no; the same request will be refused again.
//   - 500 Internal Server Error: no. A 500 most often means that this
//     request hit a bug in the server, which another attempt hits again;
//     servers that are overloaded, restarting or cut off from a backend say
//     so with 502, 503 or 504. This is Breakwater's one rule for 500: the
//     transport package follows it too (it still counts a 500 as a breaker
//     failure). Wrap DefaultRetryable, or mark the error with Transient, to
//     retry a server whose 500s are transient.
//   - 502, 503, 504 and other 5xx: yes, except 501 Not Implemented, 505 HTTP
//     Version Not Supported and 511 Network Authentication Required, which
//     another attempt will not change.
//   - Anything else (1xx, 2xx, 3xx, invalid codes): no; these are not
//     failures a retry can fix.
func RetryableStatus(code int) bool {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests:
		return true
	case code >= 400 && code < 500:
		return false
	case code == http.StatusInternalServerError,
		code == http.StatusNotImplemented,
		code == http.StatusHTTPVersionNotSupported,
		code == http.StatusNetworkAuthenticationRequired:
		return false
	case code >= 500 && code < 600:
		return true
	default:
		return false
	}
}

// ParseRetryAfter parses the value of an HTTP Retry-After header (RFC 9110,
// section 10.2.3) in either form: delay-seconds ("120") or an HTTP-date
// ("Wed, 21 Oct 2015 07:28:00 GMT", and the obsolete forms http.ParseTime
// accepts), and returns how long to wait from now. A date in the past gives 0;
// delay-seconds too large for a Duration give the largest Duration. It
// reports false for an empty or malformed value, including negative or
// fractional seconds.
func ParseRetryAfter(value string, now time.Time) (time.Duration, bool) {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0, false
	}
	if isDigits(value) {
		secs, err := strconv.ParseUint(value, 10, 64)
		if err != nil || secs > uint64(math.MaxInt64/int64(time.Second)) {
			// Only overflow can fail here: the value is all digits.
			return time.Duration(math.MaxInt64), true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(value)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d < 0 {
		d = 0
	}
	return d, true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
