// Package retry retries operations with jittered exponential backoff, asking
// a gate (typically a fleet-wide circuit breaker) before every attempt.
//
// [Do] runs a function under a [Policy]:
//
//	resp, err := retry.Do(ctx, retry.Policy{
//		Name:       "GET https://api.example.com/items",
//		MaxElapsed: 30 * time.Second,
//		Gate:       br, // a *breaker.Breaker
//	}, func(ctx context.Context) (*Items, error) {
//		return fetchItems(ctx)
//	})
//
// The zero Policy is usable: three attempts, waits growing from 100ms by a
// factor of 2 up to 10s with full jitter, and [DefaultRetryable] deciding
// which errors are worth another attempt.
//
// # Asking first
//
// A [Gate] is asked before every attempt, the first included. When it
// refuses, Do stops at once, without calling the function, and returns an
// [*Error] that matches both [ErrExhausted] and the gate's own error and says
// how long until the gate expects to allow an attempt. So a fleet whose
// dependency is down sends it nothing until the breaker lets a probe through.
// [Policy.WaitForGate] makes Do wait for that moment instead, when it falls
// within [Policy.MaxElapsed].
//
// # Limits
//
// Retrying stops at MaxAttempts, at MaxElapsed, when the gate refuses, when a
// [Budget] shared by a fleet refuses another retry, when the error is not
// retryable ([Permanent], [DefaultRetryable]), or when ctx is done. Servers
// that say how long to wait ([StatusError.RetryAfter], [ParseRetryAfter])
// are obeyed, within MaxDelay; a 429 without Retry-After backs off
// [Policy.RateLimitFactor] times longer than other failures. A wait that
// would end past ctx's deadline is not slept: Do returns the last result at
// once ([ReasonDeadline]).
//
// HTTP 500 is not retried by default ([RetryableStatus]): it most often
// means a bug that the next attempt meets again. Package transport follows
// the same rule.
//
// # Observing
//
// [Policy.OnEvent] receives an [Event] for every attempt and gate refusal:
// attempt number, error and its [Kind] (connection, timeout, rate limit,
// other), the backoff before the next attempt and whether one follows.
//
// Package retry knows nothing of Redis or of the breaker: [Gate], [Budget]
// and [Clock] are the small interfaces it needs.
package retry
