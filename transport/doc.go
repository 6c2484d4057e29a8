// Package transport is an http.RoundTripper that retries requests and
// guards every host with a circuit breaker shared by the whole fleet.
//
// Wrap an http.Client's transport:
//
//	st, _ := store.New(redisClient, store.Options{Prefix: "checkout"})
//	tr, _ := transport.New(transport.Options{
//		Store:    st,
//		Settings: breaker.Settings{ConsecutiveFailures: 5, OpenDuration: 30 * time.Second},
//		Retry:    retry.Policy{MaxAttempts: 3, Budget: budget},
//	})
//	defer tr.Close()
//	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
//
// Each host (by default the request URL's Host; see Options.BreakerName) gets
// its own breaker, made on demand from Options.Store and shared, through the
// store, with every instance that uses the same name. Every attempt runs
// through that breaker: transport errors, 5xx responses and 429 responses
// count as failures, other responses as successes. While the breaker is
// open, a request makes no attempt at all and fails at once with an error
// matching breaker.ErrOpen.
//
// Requests are retried as Options.Retry says, when it is safe: for GET,
// HEAD, PUT, DELETE, OPTIONS and TRACE, and for POST and PATCH only with an
// Idempotency-Key (or X-Idempotency-Key) header or Options.RetryPOST. A
// request with a body is retried only when its GetBody can rewind it
// (http.NewRequest sets GetBody for bytes, strings and bytes.Buffer
// readers). By default, 429, 502, 503 and 504 responses and connection
// errors are retried (see DefaultRetryable), after the wait a Retry-After
// header asks for when there is one.
//
// When retries run out, the last response is returned as it came, like any
// RoundTripper returns a response whatever its status; the responses before
// it are drained and closed. Only when the breaker stopped the retries is an
// error returned.
package transport
