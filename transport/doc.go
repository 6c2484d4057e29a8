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
// # Breakers
//
// Each host (by default the request URL's Host; see Options.BreakerName) gets
// its own breaker, made on demand from Options.Store and shared, through the
// store, with every instance that uses the same name. The breakers start
// from Options.Settings; Options.SettingsFor gives a host settings of its
// own. They live in a breaker.Group: at most Options.MaxBreakers of them
// are kept in memory, and one left idle for Options.IdleTimeout is closed
// (its shared state stays in the store), so a client that calls many hosts
// stays bounded.
//
// Every attempt runs through the host's breaker: transport errors and 5xx
// responses count as failures, other responses as successes, and 429 Too
// Many Requests not at all (Options.CountRateLimits counts it), since a host
// that paces one caller is not down for the fleet. While the breaker is
// open, a request makes no attempt at all and fails at once with an error
// matching breaker.ErrOpen. A request that never leaves the process says
// nothing of its host and is not counted: one with an invalid method,
// header or trailer fails at once with ErrInvalidRequest, and an error that
// an *http.Transport base returns before it asks for a connection (an
// unsupported scheme, say) is neither counted nor retried.
//
// # Retries
//
// Requests are retried as Options.Retry says, when it is safe: for GET,
// HEAD, PUT, DELETE, OPTIONS and TRACE, and for POST and PATCH only with an
// Idempotency-Key (or X-Idempotency-Key) header or Options.RetryPOST. A
// request with a body is retried only when its GetBody can rewind it
// (http.NewRequest sets GetBody for bytes, strings and bytes.Buffer
// readers). Which attempts are worth another is decided by
// Options.CheckRetry, which sees the response or the error; the default,
// DefaultCheckRetry, follows the retry package's one rule: 408, 429, 502,
// 503, 504 and connection errors are retried, a 500 is not (it most often
// means a bug, which another attempt meets again). A Retry-After header is
// obeyed; a wait (Retry-After or backoff) that would end past the request's
// deadline, such as an http.Client's Timeout, is not slept: the last
// response is returned at once. Options.AttemptTimeout bounds each attempt;
// Options.PrepareRetry adjusts each retry's request before it is sent.
//
// When retries run out, the last response is returned as it came, like any
// RoundTripper returns a response whatever its status; the responses before
// it are drained and closed. Only when the breaker stopped the retries, or a
// hook failed, is an error returned.
//
// # Logging
//
// Options.Logger, a *slog.Logger, receives retries, requests that failed
// for good, and requests the breaker refused. Without it the transport logs
// nothing.
package transport
