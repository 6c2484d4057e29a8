package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/retry"
)

// ErrInvalidOptions is matched by the errors of New for bad Options.
var ErrInvalidOptions = errors.New("transport: invalid options")

// ErrInvalidRequest is matched by the error of a request that no server
// could be sent: an invalid method, header or trailer. Such a request makes
// no attempt and is not counted by its host's breaker.
var ErrInvalidRequest = errors.New("transport: invalid request")

// Options configure a Transport. Store is required; the zero value of every
// other field means its default.
type Options struct {
	// Store keeps the shared state of the per-host breakers, which are made
	// on demand from it (name: see BreakerName). Required.
	Store breaker.Store

	// Settings are the settings every host's breaker starts from.
	Settings breaker.Settings
	// SettingsFor, when set, returns the settings of one host's breaker
	// (host is the breaker's name; see BreakerName), given the shared
	// Settings: return shared for the hosts it does not single out, or a
	// copy with the fields it overrides. It is called each time the
	// transport makes the host's breaker, and must be safe for concurrent
	// use. Settings that breaker.New rejects make the host's requests fail
	// with an error matching breaker.ErrInvalidSettings.
	SettingsFor func(host string, shared breaker.Settings) breaker.Settings
	// MaxBreakers bounds how many per-host breakers the transport keeps in
	// memory (default breaker.DefaultMaxBreakers, 1000): past it, the least
	// recently used breaker that no request is using is closed. A client
	// that calls many hosts (a crawler, a webhook sender) stays bounded.
	MaxBreakers int
	// IdleTimeout closes a host's breaker when no request has used it for
	// this long (default breaker.DefaultIdleTimeout, 5 minutes; negative:
	// never). Closing frees this instance's memory only: the breaker's
	// shared state stays in the store and is found again by the next
	// request to the host.
	IdleTimeout time.Duration

	// Retry is the retry policy. Its Gate is set to the host's breaker and
	// its Name to the request URL (with any password redacted) for each
	// request. Its Retryable is asked only when CheckRetry is nil, with the
	// attempt's error or, for a response, a *retry.StatusError.
	Retry retry.Policy
	// CheckRetry, when set, decides after each attempt whether another is
	// worth making, seeing the attempt's response or its error (exactly one
	// is non-nil). Return true to retry, within the policy's limits
	// (attempts, MaxElapsed, budget, breaker, ctx's deadline); false to
	// stop with this attempt's response or error. A non-nil error stops
	// retrying at once: RoundTrip drains and closes the response and
	// returns that error. The response's body must not be read (use the
	// status and the headers). Default DefaultCheckRetry.
	CheckRetry func(ctx context.Context, resp *http.Response, err error) (bool, error)
	// PrepareRetry, when set, is called with each retry's request, a fresh
	// copy of the original with its body rewound, before it is sent (to
	// sign it again, or set a header that counts attempts). An error stops
	// retrying: RoundTrip returns it.
	PrepareRetry func(req *http.Request) error
	// AttemptTimeout bounds each attempt, from sending the request until
	// its response headers arrive (default 0: no bound but the request's
	// context). An attempt that runs out is an error matching
	// context.DeadlineExceeded whose Timeout method reports true; it counts
	// as a breaker failure and is retried. The body of the response
	// RoundTrip returns is bounded by the request's context only.
	AttemptTimeout time.Duration
	// CountRateLimits counts 429 Too Many Requests responses as breaker
	// failures. By default a 429 is not counted at all: it says that the
	// host is up and is pacing this client, and one rate-limited caller
	// must not open the host's breaker for the whole fleet. Either way a
	// 429 is retried after the wait its Retry-After header asks for.
	CountRateLimits bool
	// Logger, when set, receives the transport's log: retries (Info),
	// requests that failed for good (Warn), and attempts the breaker
	// refused (Debug). Default: no log.
	Logger *slog.Logger

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
	// must not ask the transport for a breaker.
	OnBreaker func(*breaker.Breaker)
}

// Transport is an http.RoundTripper that retries requests and runs every
// attempt through the breaker of the request's host. Make it with New; it
// is safe for concurrent use. Close releases its breakers.
type Transport struct {
	group          *breaker.Group
	policy         retry.Policy
	checkRetry     func(context.Context, *http.Response, error) (bool, error)
	prepareRetry   func(*http.Request) error
	attemptTimeout time.Duration
	countLimits    bool
	log            *slog.Logger
	base           http.RoundTripper
	retryPOST      bool
	name           func(*http.Request) string
}

var _ http.RoundTripper = (*Transport)(nil)

// New returns a Transport. It returns an error matching ErrInvalidOptions,
// and naming the field, when opts is invalid: no Store, a Retry policy that
// fails retry.Policy.Validate, Settings that breaker.New rejects (the error
// then matches breaker.ErrInvalidSettings too), or a negative MaxBreakers
// or AttemptTimeout. New does no I/O.
func New(opts Options) (*Transport, error) {
	switch {
	case opts.Store == nil:
		return nil, fmt.Errorf("%w: Store: want a breaker.Store, such as store.New's", ErrInvalidOptions)
	case opts.MaxBreakers < 0:
		return nil, fmt.Errorf("%w: MaxBreakers %d: want >= 1, or 0 for the default", ErrInvalidOptions, opts.MaxBreakers)
	case opts.AttemptTimeout < 0:
		return nil, fmt.Errorf("%w: AttemptTimeout %v: want > 0, or 0 for none", ErrInvalidOptions, opts.AttemptTimeout)
	}
	if err := opts.Retry.Validate(); err != nil {
		return nil, fmt.Errorf("%w: Retry: %w", ErrInvalidOptions, err)
	}
	if err := opts.Settings.Validate(); err != nil {
		return nil, fmt.Errorf("%w: Settings: %w", ErrInvalidOptions, err)
	}
	group, err := breaker.NewGroup(opts.Store, breaker.GroupOptions{
		Settings:    opts.Settings,
		SettingsFor: opts.SettingsFor,
		MaxBreakers: opts.MaxBreakers,
		IdleTimeout: opts.IdleTimeout,
		OnBreaker:   opts.OnBreaker,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	t := &Transport{
		group:          group,
		policy:         opts.Retry,
		checkRetry:     opts.CheckRetry,
		prepareRetry:   opts.PrepareRetry,
		attemptTimeout: opts.AttemptTimeout,
		countLimits:    opts.CountRateLimits,
		log:            opts.Logger,
		base:           opts.Base,
		retryPOST:      opts.RetryPOST,
		name:           opts.BreakerName,
	}
	if t.base == nil {
		t.base = http.DefaultTransport
	}
	if t.name == nil {
		t.name = func(r *http.Request) string { return r.URL.Host }
	}
	if t.checkRetry == nil {
		t.checkRetry = DefaultCheckRetry
		if opts.Retry.Retryable != nil {
			t.checkRetry = retryableCheck(opts.Retry.Retryable)
		}
	}
	return t, nil
}

// Breaker returns the breaker called name (a host, unless
// Options.BreakerName says otherwise), making it, and calling
// Options.OnBreaker with it, when the transport has none. The transport
// may close it later (see MaxBreakers and IdleTimeout); ask again rather
// than keep it. After Close it returns an error matching breaker.ErrClosed.
func (t *Transport) Breaker(name string) (*breaker.Breaker, error) {
	b, err := t.group.Breaker(name)
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	return b, nil
}

// Breakers returns how many per-host breakers the transport keeps now.
func (t *Transport) Breakers() int { return t.group.Len() }

// Close closes the breakers the transport made (not the store) and makes
// later requests fail with an error matching breaker.ErrClosed.
func (t *Transport) Close() error { return t.group.Close() }

// CloseIdleConnections closes the idle connections of the base transport,
// when it has such a method; http.Client.CloseIdleConnections calls it.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip sends req, retrying as the transport's policy says, with every
// attempt admitted by the breaker of req's host.
//
// It returns the last response unchanged, whatever its status, once retries
// run out (attempts, MaxElapsed, the retry budget, or a wait that would end
// past the request's deadline, which it does not sleep) or when the
// response is not worth retrying; responses it does not return are drained
// (up to 64 KiB) and closed. It returns an error when no attempt returned a
// response, when the breaker refused the next attempt (matching
// breaker.ErrOpen; with the breaker open, RoundTrip makes no attempt at
// all), when CheckRetry or PrepareRetry failed, or when req's context ended
// (an attempt's response is then closed).
//
// An attempt's outcome counts for the breaker as a failure when it is an
// error or a 5xx response, passed to the breaker's Classify as the error or
// as a *retry.StatusError; a 429 is not counted (see CountRateLimits); other
// responses count as successes.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		closeBody(req)
		return nil, errors.New("transport: request has no URL")
	}
	if err := invalid(req); err != nil {
		closeBody(req)
		return nil, err
	}
	br, release, err := t.group.Hold(t.name(req))
	if err != nil {
		closeBody(req)
		return nil, fmt.Errorf("transport: %w", err)
	}
	defer release()

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

	rt := &roundTrip{t: t, req: req, br: br}
	p := t.policy
	p.Name = req.URL.Redacted()
	p.Gate = br
	if !t.retriable(req) {
		p.MaxAttempts = 1
	}
	if t.log != nil {
		p.OnEvent = t.logEvents(ctx, p.OnEvent)
	}
	rt.clock = p.Clock
	resp, err := retry.Do(ctx, p, rt.attempt)
	resp, err = rt.result(resp, err)
	if t.log != nil {
		t.logResult(ctx, req, rt.attempts, resp, err)
	}
	return resp, err
}
