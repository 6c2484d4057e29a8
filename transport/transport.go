package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/retry"
)

// ErrInvalidOptions is matched by the errors of New for bad Options.
var ErrInvalidOptions = errors.New("transport: invalid options")

// Options configure a Transport. Store is required; the zero value of every
// other field means its default.
type Options struct {
	// Store keeps the shared state of the per-host breakers, which are made
	// on demand from it (name: see BreakerName). Required.
	Store breaker.Store
	// Settings are the settings of every host's breaker.
	Settings breaker.Settings
	// Retry is the retry policy. Its Gate is set to the host's breaker and
	// its Name to the request URL (with any password redacted) for each
	// request; when its Retryable is nil, DefaultRetryable decides.
	Retry retry.Policy
	// Base makes each attempt (default http.DefaultTransport).
	Base http.RoundTripper
	// RetryPOST retries POST and PATCH requests even without an
	// Idempotency-Key header.
	RetryPOST bool
	// BreakerName names the breaker that guards a request (default: the
	// request URL's Host, such as "api.example.com:8443").
	BreakerName func(*http.Request) string
	// OnBreaker, when set, is called once with each breaker the transport
	// makes, before any request uses it (for example to Listen to it). It
	// must not ask the transport for the same breaker.
	OnBreaker func(*breaker.Breaker)
}

// Transport is an http.RoundTripper that retries requests and runs every
// attempt through the breaker of the request's host. Make it with New; it
// is safe for concurrent use. Close releases its breakers.
type Transport struct {
	store     breaker.Store
	settings  breaker.Settings
	policy    retry.Policy
	base      http.RoundTripper
	retryPOST bool
	name      func(*http.Request) string
	onBreaker func(*breaker.Breaker)

	mu     sync.Mutex
	hosts  map[string]*host
	closed bool
}

// host is a breaker being made or made.
type host struct {
	ready chan struct{} // closed once br or err is set
	br    *breaker.Breaker
	err   error
}

var _ http.RoundTripper = (*Transport)(nil)

// New returns a Transport. It returns an error matching ErrInvalidOptions,
// and naming the field, when opts is invalid: no Store, a Retry policy that
// fails retry.Policy.Validate, or Settings that breaker.New rejects (the
// error then matches breaker.ErrInvalidSettings too). New does no I/O.
func New(opts Options) (*Transport, error) {
	if opts.Store == nil {
		return nil, fmt.Errorf("%w: Store: want a breaker.Store, such as store.New's", ErrInvalidOptions)
	}
	if err := opts.Retry.Validate(); err != nil {
		return nil, fmt.Errorf("%w: Retry: %w", ErrInvalidOptions, err)
	}
	if err := opts.Settings.Validate(); err != nil {
		return nil, fmt.Errorf("%w: Settings: %w", ErrInvalidOptions, err)
	}

	t := &Transport{
		store:     opts.Store,
		settings:  opts.Settings,
		policy:    opts.Retry,
		base:      opts.Base,
		retryPOST: opts.RetryPOST,
		name:      opts.BreakerName,
		onBreaker: opts.OnBreaker,
		hosts:     map[string]*host{},
	}
	if t.base == nil {
		t.base = http.DefaultTransport
	}
	if t.name == nil {
		t.name = func(r *http.Request) string { return r.URL.Host }
	}
	if t.policy.Retryable == nil {
		t.policy.Retryable = DefaultRetryable
	}
	return t, nil
}

// DefaultRetryable is the transport's Retryable when Options.Retry has
// none. It retries 429 Too Many Requests, 502 Bad Gateway, 503 Service
// Unavailable and 504 Gateway Timeout, which say that the dependency or the
// way to it is overloaded or away, and not other statuses: a 500 most often
// means that this request hit a bug, which another attempt will hit again.
// Errors other than statuses are decided by retry.DefaultRetryable
// (connection refused or reset, timeouts: retried).
func DefaultRetryable(err error) bool {
	var se *retry.StatusError
	if errors.As(err, &se) {
		switch se.StatusCode {
		case http.StatusTooManyRequests, http.StatusBadGateway,
			http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	return retry.DefaultRetryable(err)
}

// Breaker returns the breaker called name (a host, unless
// Options.BreakerName says otherwise), making it on the first call and
// calling Options.OnBreaker with it. After Close it returns an error
// matching breaker.ErrClosed.
func (t *Transport) Breaker(name string) (*breaker.Breaker, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, fmt.Errorf("transport: breaker %q: %w", name, breaker.ErrClosed)
	}
	h, ok := t.hosts[name]
	if !ok {
		h = &host{ready: make(chan struct{})}
		t.hosts[name] = h
	}
	t.mu.Unlock()
	if !ok {
		t.make(name, h)
	}
	<-h.ready
	if h.err != nil {
		return nil, fmt.Errorf("transport: breaker %q: %w", name, h.err)
	}
	return h.br, nil
}

// make makes h's breaker. A name the breaker rejects is forgotten, so the
// map holds only real breakers.
func (t *Transport) make(name string, h *host) {
	defer close(h.ready)
	h.br, h.err = breaker.New(name, t.store, t.settings)
	if h.err != nil {
		t.mu.Lock()
		delete(t.hosts, name)
		t.mu.Unlock()
		return
	}
	if t.onBreaker != nil {
		t.onBreaker(h.br)
	}
}

// Close closes the breakers the transport made (not the store) and makes
// later requests fail with an error matching breaker.ErrClosed.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	hosts := make([]*host, 0, len(t.hosts))
	for _, h := range t.hosts {
		hosts = append(hosts, h)
	}
	t.mu.Unlock()
	var errs []error
	for _, h := range hosts {
		<-h.ready
		if h.br != nil {
			errs = append(errs, h.br.Close())
		}
	}
	return errors.Join(errs...)
}

// CloseIdleConnections closes the idle connections of the base transport,
// when it has such a method; http.Client.CloseIdleConnections calls it.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// drainLimit bounds how much of a discarded response body is read so that
// its connection can be reused.
const drainLimit = 64 << 10

// RoundTrip sends req, retrying as the transport's policy says, with every
// attempt admitted by the breaker of req's host.
//
// It returns the last response unchanged, whatever its status, once retries
// run out (attempts, MaxElapsed or the retry budget) or when the status is
// not worth retrying; responses it does not return are drained (up to 64
// KiB) and closed. It returns an error when no attempt returned a response,
// or when the breaker refused the next attempt (matching breaker.ErrOpen;
// with the breaker open, RoundTrip makes no attempt at all), or when req's
// context ended (an attempt's response is then closed).
//
// An attempt's outcome counts for the breaker as a failure when it is an
// error or a 5xx or 429 response, passed to the breaker's Classify as the
// error or as a *retry.StatusError; other responses count as successes.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		closeBody(req)
		return nil, errors.New("transport: request has no URL")
	}
	br, err := t.Breaker(t.name(req))
	if err != nil {
		closeBody(req)
		return nil, err
	}
	p := t.policy
	p.Name = req.URL.Redacted()
	p.Gate = br
	if !t.retriable(req) {
		p.MaxAttempts = 1
	}

	ctx := req.Context()
	// http.Client cancels requests to RoundTrippers other than its own
	// through the deprecated Request.Cancel (on Timeout, for one); retrying
	// must stop then too.
	//lint:ignore SA1019 http.Client still uses it
	if reqCancel := req.Cancel; reqCancel != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel() // ends the goroutine below
		go func() {
			select {
			case <-reqCancel:
				cancel()
			case <-ctx.Done():
			}
		}()
	}

	var (
		attempts int
		prev     *http.Response // the previous attempt's response, not yet returned
		status   error          // the *retry.StatusError of prev
	)
	resp, err := retry.Do(ctx, p, func(ctx context.Context) (*http.Response, error) {
		attempts++
		if prev != nil {
			drain(prev)
			prev, status = nil, nil
		}
		r := req
		if attempts > 1 {
			var err error
			if r, err = rewind(req); err != nil {
				return nil, retry.Permanent(err)
			}
		}
		permit, err := br.Allow(ctx)
		if err != nil {
			closeBody(r)
			return nil, retry.Permanent(err)
		}
		resp, err := t.base.RoundTrip(r)
		if err != nil {
			permit.Done(ctx, err)
			return nil, err
		}
		se := statusError(resp, p.Clock)
		if se != nil && (resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests) {
			permit.Done(ctx, se)
		} else {
			permit.Done(ctx, nil)
		}
		if se == nil {
			return resp, nil
		}
		prev, status = resp, se
		return resp, se
	})
	if attempts == 0 {
		closeBody(req)
	}
	if err == nil {
		return resp, nil
	}
	if resp != nil {
		// Do returns its *retry.Error itself, and the attempt's error as
		// it was returned when that error is not worth a retry.
		re, gaveUp := err.(*retry.Error)
		if err == status || gaveUp && re.Reason != retry.ReasonGate {
			// Retries ran out, or the status is not worth one: the last
			// response is the answer.
			return resp, nil
		}
		drain(resp)
	}
	if errors.Is(err, context.DeadlineExceeded) && req.Context().Err() != nil {
		return nil, timeoutError{err}
	}
	return nil, err
}

// timeoutError is the error of a request whose deadline (such as
// http.Client.Timeout) ended it. Like net/http's own, it says Timeout, so
// that the *url.Error an http.Client wraps it in does too.
type timeoutError struct{ error }

func (e timeoutError) Unwrap() error { return e.error }

// Timeout reports true.
func (e timeoutError) Timeout() bool { return true }

// retriable reports whether req may be sent more than once.
func (t *Transport) retriable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete,
		http.MethodOptions, http.MethodTrace:
		return true
	case http.MethodPost, http.MethodPatch:
		return t.retryPOST || req.Header.Get("Idempotency-Key") != "" ||
			req.Header.Get("X-Idempotency-Key") != ""
	}
	return false
}

// rewind returns a copy of req for another attempt, with a fresh body.
func rewind(req *http.Request) (*http.Request, error) {
	r := req.Clone(req.Context())
	if req.Body == nil || req.Body == http.NoBody {
		return r, nil
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, fmt.Errorf("transport: rewind the body of %s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	r.Body = body
	return r, nil
}

// statusError returns the *retry.StatusError of a response whose status a
// retry might fix (408, 429, 5xx), with the wait its Retry-After header asks
// for, or nil.
func statusError(resp *http.Response, clock retry.Clock) *retry.StatusError {
	code := resp.StatusCode
	if code != http.StatusRequestTimeout && code != http.StatusTooManyRequests && code < 500 {
		return nil
	}
	se := &retry.StatusError{StatusCode: code}
	if v := resp.Header.Get("Retry-After"); v != "" {
		now := time.Now()
		if clock != nil {
			now = clock.Now()
		}
		if d, ok := retry.ParseRetryAfter(v, now); ok {
			se.RetryAfter = d
		}
	}
	return se
}

// drain reads a little of a discarded response's body, so that its
// connection may be reused, and closes it.
func drain(resp *http.Response) {
	if resp.Body == nil {
		return
	}
	_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
	_ = resp.Body.Close()
}

// closeBody closes the body of a request that was not sent, as a
// RoundTripper must.
func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}
