package transport

import (
	"context"
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
