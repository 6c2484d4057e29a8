package transport

import (
	"context"
	"fmt"
	"net/http"

	"github.com/breakwater-go/breakwater/retry"
)

// DefaultCheckRetry is the transport's CheckRetry when Options has none. It
// follows the retry package's one rule (retry.DefaultRetryable and
// retry.RetryableStatus), so that a status is retried, or not, the same way
// whether a caller uses retry.Do or the transport:
//
//   - A response: retried when its status is 408, 429, 502, 503, 504 or
//     another 5xx except 500, 501, 505 and 511. A 500 is not retried: it
//     most often means that the request hit a bug, which another attempt
//     hits again (it still counts as a breaker failure).
//   - An error: retry.DefaultRetryable decides (connection refused or
//     reset, timeouts, an AttemptTimeout: retried; TLS certificate errors,
//     a cancelled context: not).
//   - When ctx is done: not retried.
//
// It never returns an error. Wrap it to extend it:
//
//	CheckRetry: func(ctx context.Context, resp *http.Response, err error) (bool, error) {
//		if resp != nil && resp.StatusCode == http.StatusInternalServerError && resp.Header.Get("X-Transient") != "" {
//			return true, nil
//		}
//		return transport.DefaultCheckRetry(ctx, resp, err)
//	}
func DefaultCheckRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, nil
	}
	if err != nil {
		return retry.DefaultRetryable(err), nil
	}
	return retry.RetryableStatus(resp.StatusCode), nil
}

// retryableCheck is the CheckRetry of a transport whose Retry policy has a
// Retryable: it asks Retryable about the error, or about the
// *retry.StatusError of a failed response (408, 429, 5xx).
func retryableCheck(retryable func(error) bool) func(context.Context, *http.Response, error) (bool, error) {
	return func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if ctx.Err() != nil {
			return false, nil
		}
		if err != nil {
			return retryable(err), nil
		}
		if se := statusError(resp, nil); se != nil {
			return retryable(se), nil
		}
		return false, nil
	}
}

// invalid returns an error matching ErrInvalidRequest when req cannot be
// sent as it is: its method is not a token, or a header or trailer has a
// name that is not a token or a value with a control character (a CR or
// LF, say) other than a tab. These are net/http's own checks, made before
// the breaker is asked: they are the request's bugs, not the host's, so no
// attempt is made and nothing is counted.
func invalid(req *http.Request) error {
	if req.Method != "" && !token(req.Method) {
		return fmt.Errorf("%w: method %q is not a token", ErrInvalidRequest, req.Method)
	}
	fields := [...]struct {
		what string
		h    http.Header
	}{{"header", req.Header}, {"trailer", req.Trailer}}
	for _, f := range fields {
		what := f.what
		for name, values := range f.h {
			if !token(name) {
				return fmt.Errorf("%w: %s name %q is not a token", ErrInvalidRequest, what, name)
			}
			for _, v := range values {
				if !fieldValue(v) {
					return fmt.Errorf("%w: %s %q has a control character in its value", ErrInvalidRequest, what, name)
				}
			}
		}
	}
	return nil
}

// token reports whether s is an RFC 9110 token (a method, a field name).
func token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c < 0x80 && c > ' ' && c != 0x7f && !isDelimiter(c):
		default:
			return false
		}
	}
	return true
}

// isDelimiter reports whether c is one of RFC 9110's delimiters, which a
// token may not hold.
func isDelimiter(c byte) bool {
	switch c {
	case '"', '(', ')', ',', '/', ':', ';', '<', '=', '>', '?', '@', '[', '\\', ']', '{', '}':
		return true
	}
	return false
}

// fieldValue reports whether v holds no control character but a tab.
func fieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
