package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/retry"
)

// roundTrip is one call of RoundTrip: its attempts and what they left.
type roundTrip struct {
	t     *Transport
	req   *http.Request
	br    *breaker.Breaker
	clock retry.Clock

	attempts int
	prev     *http.Response // the previous attempt's response, not yet returned
	last     error          // the error the last attempt returned to retry.Do
	stopped  error          // CheckRetry's or PrepareRetry's error, returned as it is
}

// attempt is the function retry.Do calls: one attempt, admitted by the
// breaker, whose outcome it reports, and whose retry CheckRetry decides (the
// decision travels as a retry.Transient or retry.Permanent mark).
func (rt *roundTrip) attempt(ctx context.Context) (*http.Response, error) {
	resp, err := rt.try(ctx)
	rt.last = err
	return resp, err
}

func (rt *roundTrip) try(ctx context.Context) (*http.Response, error) {
	t := rt.t
	rt.attempts++
	if rt.prev != nil {
		drain(rt.prev)
		rt.prev = nil
	}
	r := rt.req
	if rt.attempts > 1 {
		var err error
		if r, err = rewind(rt.req); err != nil {
			return nil, retry.Permanent(err)
		}
		if t.prepareRetry != nil {
			if err := t.prepareRetry(r); err != nil {
				closeBody(r)
				rt.stopped = fmt.Errorf("transport: PrepareRetry: %w", err)
				return nil, retry.Permanent(rt.stopped)
			}
		}
	}
	permit, err := rt.br.Allow(ctx)
	if err != nil {
		closeBody(r)
		return nil, retry.Permanent(err)
	}
	resp, sent, err := rt.send(ctx, r)
	var se *retry.StatusError
	switch {
	case err != nil && !sent:
		// The request never left this process (an invalid header, an
		// unsupported scheme, a bad proxy setting, a context that was
		// already done): the error is the request's, not the host's. It
		// says nothing of the host and the next attempt meets it again.
		permit.Done(ctx, breaker.Ignore(err))
		return nil, retry.Permanent(err)
	case err != nil:
		permit.Done(ctx, err)
	default:
		se = statusError(resp, rt.clock)
		switch {
		case se == nil:
			permit.Done(ctx, nil)
		case se.StatusCode == http.StatusTooManyRequests && !t.countLimits:
			permit.Done(ctx, breaker.Ignore(se))
		case se.StatusCode >= 500 || se.StatusCode == http.StatusTooManyRequests:
			permit.Done(ctx, se)
		default:
			permit.Done(ctx, nil)
		}
	}

	again, checkErr := t.checkRetry(ctx, resp, err)
	if checkErr != nil {
		if resp != nil {
			drain(resp)
		}
		rt.stopped = checkErr
		return nil, retry.Permanent(checkErr)
	}
	mark := retry.Permanent
	if again {
		mark = retry.Transient
	}
	if err != nil {
		return nil, mark(err)
	}
	if !again && se == nil {
		return resp, nil
	}
	if se == nil {
		// CheckRetry retries a status that is no failure of its own.
		se = &retry.StatusError{StatusCode: resp.StatusCode, RetryAfter: retryAfter(resp, rt.clock)}
	}
	if again {
		rt.prev = resp
	}
	return resp, mark(se)
}

// result turns what retry.Do returned into what RoundTrip returns.
func (rt *roundTrip) result(resp *http.Response, err error) (*http.Response, error) {
	if rt.attempts == 0 {
		closeBody(rt.req)
	}
	if err == nil {
		return resp, nil
	}
	if rt.stopped != nil {
		if resp != nil {
			drain(resp)
		}
		return nil, rt.stopped
	}
	if resp != nil {
		// Do returns the attempt's error as it was returned when the
		// attempt is not worth a retry, and its own *retry.Error when it
		// gave up.
		var gaveUp *retry.Error
		if err == rt.last || errors.As(err, &gaveUp) && err == error(gaveUp) && gaveUp.Reason != retry.ReasonGate {
			// Retries ran out, or the response is not worth one: the
			// last response is the answer.
			return resp, nil
		}
		drain(resp)
	}
	if errors.Is(err, context.DeadlineExceeded) && rt.req.Context().Err() != nil {
		return nil, timeoutError{err}
	}
	return nil, err
}

// send makes one attempt, bounded by AttemptTimeout until its headers
// arrive. sent is false when an *http.Transport returned an error before it
// asked for a connection: the request never left the process (other base
// transports are taken to have sent it).
func (rt *roundTrip) send(ctx context.Context, r *http.Request) (resp *http.Response, sent bool, err error) {
	sent = true
	if _, ok := rt.t.base.(*http.Transport); ok {
		var asked atomic.Bool
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GetConn: func(string) { asked.Store(true) }})
		r = r.WithContext(ctx)
		defer func() { sent = err == nil || asked.Load() }()
	}
	d := rt.t.attemptTimeout
	if d <= 0 {
		resp, err = rt.t.base.RoundTrip(r)
		return resp, sent, err
	}
	resp, err = rt.sendWithin(ctx, r, d)
	return resp, sent, err
}

// sendWithin makes one attempt whose headers must arrive within d.
func (rt *roundTrip) sendWithin(ctx context.Context, r *http.Request, d time.Duration) (*http.Response, error) {
	actx, cancel := context.WithCancel(ctx)
	var state atomic.Int32 // 0: running, 1: headers arrived, 2: timed out
	stop := afterFunc(rt.clock, d, func() {
		if state.CompareAndSwap(0, 2) {
			cancel()
		}
	})
	resp, err := rt.t.base.RoundTrip(r.WithContext(actx))
	stop()
	if state.CompareAndSwap(0, 1) && err == nil {
		// The attempt's context lives as long as the response's body
		// (a 101 Switching Protocols body is the connection, and writable).
		body := &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
		if w, ok := resp.Body.(io.Writer); ok {
			resp.Body = &cancelOnCloseWriter{body, w}
		} else {
			resp.Body = body
		}
		return resp, nil
	}
	cancel()
	if resp != nil {
		_ = resp.Body.Close()
	}
	if state.Load() == 2 {
		return nil, &attemptTimeoutError{d: d}
	}
	return nil, err
}

// afterFunc calls f once d has passed on clk (the system clock when nil),
// unless stop is called first.
func afterFunc(clk retry.Clock, d time.Duration, f func()) (stop func()) {
	if clk == nil {
		t := time.AfterFunc(d, f)
		return func() { t.Stop() }
	}
	done := make(chan struct{})
	fired := clk.After(d)
	go func() {
		select {
		case <-fired:
			f()
		case <-done:
		}
	}()
	return func() { close(done) }
}

// attemptTimeoutError is the error of an attempt that AttemptTimeout ended.
// It matches context.DeadlineExceeded and reports Timeout, as net/http's
// own timeouts do.
// (What the base transport returned, a cancellation, is left out: it would
// make the timeout look like the caller's own cancellation.)
type attemptTimeoutError struct {
	d time.Duration
}

func (e *attemptTimeoutError) Error() string {
	return fmt.Sprintf("transport: attempt timed out after %v (AttemptTimeout)", e.d.Round(time.Millisecond))
}

func (e *attemptTimeoutError) Unwrap() error { return context.DeadlineExceeded }

// Timeout reports true.
func (e *attemptTimeoutError) Timeout() bool { return true }

// cancelOnClose ends an attempt's context when its response body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// cancelOnCloseWriter is a cancelOnClose whose body is writable too, as a
// 101 Switching Protocols response's is.
type cancelOnCloseWriter struct {
	*cancelOnClose
	w io.Writer
}

func (b *cancelOnCloseWriter) Write(p []byte) (int, error) { return b.w.Write(p) }

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

// statusError returns the *retry.StatusError of a response whose status is
// a failure a retry might fix (408, 429, 5xx), with the wait its
// Retry-After header asks for, or nil.
func statusError(resp *http.Response, clock retry.Clock) *retry.StatusError {
	code := resp.StatusCode
	if code != http.StatusRequestTimeout && code != http.StatusTooManyRequests && code < 500 {
		return nil
	}
	return &retry.StatusError{StatusCode: code, RetryAfter: retryAfter(resp, clock)}
}

// retryAfter returns the wait the response's Retry-After header asks for, or 0.
func retryAfter(resp *http.Response, clock retry.Clock) time.Duration {
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0
	}
	now := time.Now()
	if clock != nil {
		now = clock.Now()
	}
	d, _ := retry.ParseRetryAfter(v, now)
	return d
}

// drainLimit bounds how much of a discarded response body is read so that
// its connection can be reused.
const drainLimit = 64 << 10

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
