package retry_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/internal/fakeclock"
	"github.com/breakwater-go/breakwater/retry"
)

var _ retry.Clock = (*fakeclock.Clock)(nil)

var epoch = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// errConn is a transient error of kind connection.
var errConn = fmt.Errorf("dial tcp 10.0.0.1:443: %w", syscall.ECONNREFUSED)

// recorder collects events.
type recorder struct {
	mu     sync.Mutex
	events []retry.Event
}

func (r *recorder) on(ev retry.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

func (r *recorder) get() []retry.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]retry.Event(nil), r.events...)
}

// attempts records the clock's time at each call and returns errs in turn
// (then nil), with the attempt number as the result.
type attempts struct {
	mu    sync.Mutex
	clk   *fakeclock.Clock
	errs  []error
	times []time.Duration // since epoch
}

func (a *attempts) fn(context.Context) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.times = append(a.times, a.clk.Now().Sub(epoch))
	n := len(a.times)
	if n <= len(a.errs) {
		return n, a.errs[n-1]
	}
	return n, nil
}

func (a *attempts) at() []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Duration(nil), a.times...)
}

type result struct {
	v   int
	err error
}

// start runs Do in the background.
func start(ctx context.Context, p retry.Policy, fn func(context.Context) (int, error)) <-chan result {
	ch := make(chan result, 1)
	go func() {
		v, err := retry.Do(ctx, p, fn)
		ch <- result{v, err}
	}()
	return ch
}

// guard bounds waits so that a wrong wait fails the test rather than hanging it.
func guard(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// step waits until Do is waiting on clk, checks the wait is want, and ends it.
func step(t *testing.T, clk *fakeclock.Clock, want time.Duration) {
	t.Helper()
	if err := clk.BlockUntilContext(guard(t), 1); err != nil {
		t.Fatalf("waiting for a %v wait: %v", want, err)
	}
	next, _ := clk.Next()
	got := next.Sub(clk.Now())
	if got != want {
		t.Errorf("wait = %v, want %v", got, want)
	}
	clk.Advance(got)
}

func finish(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-guard(t).Done():
		t.Fatal("Do did not return")
		return result{}
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDoSucceedsAfterRetries(t *testing.T) {
	clk := fakeclock.New(epoch)
	rec := &recorder{}
	a := &attempts{clk: clk, errs: []error{errConn, errConn}}
	p := retry.Policy{Name: "GET /items", Jitter: retry.JitterNone, Clock: clk, OnEvent: rec.on}
	ch := start(context.Background(), p, a.fn)
	step(t, clk, 100*time.Millisecond)
	step(t, clk, 200*time.Millisecond)
	r := finish(t, ch)
	if r.err != nil || r.v != 3 {
		t.Fatalf("Do = (%d, %v), want (3, nil)", r.v, r.err)
	}
	if got, want := a.at(), []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond}; !equalDurations(got, want) {
		t.Errorf("attempt times = %v, want %v", got, want)
	}

	want := []retry.Event{
		{Name: "GET /items", Attempt: 1, MaxAttempts: 3, Err: errConn, Kind: retry.KindConnection,
			Backoff: 100 * time.Millisecond, WillRetry: true, Elapsed: 0},
		{Name: "GET /items", Attempt: 2, MaxAttempts: 3, Err: errConn, Kind: retry.KindConnection,
			Backoff: 200 * time.Millisecond, WillRetry: true, Elapsed: 100 * time.Millisecond},
		{Name: "GET /items", Attempt: 3, MaxAttempts: 3, Err: nil, Kind: retry.KindOther,
			Elapsed: 300 * time.Millisecond},
	}
	got := rec.get()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func TestDoJitterUsesRand(t *testing.T) {
	tests := []struct {
		j     retry.Jitter
		waits []time.Duration
	}{
		{retry.JitterFull, []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}},
		{retry.JitterEqual, []time.Duration{75 * time.Millisecond, 150 * time.Millisecond, 300 * time.Millisecond}},
		// base + 0.5×(3×prev − base): 200ms, then 100+0.5×500=350ms, then 100+0.5×950=575ms.
		{retry.JitterDecorrelated, []time.Duration{200 * time.Millisecond, 350 * time.Millisecond, 575 * time.Millisecond}},
	}
	for _, tt := range tests {
		tt := tt
		t.Run(tt.j.String(), func(t *testing.T) {
			clk := fakeclock.New(epoch)
			a := &attempts{clk: clk, errs: []error{errConn, errConn, errConn}}
			p := retry.Policy{MaxAttempts: 4, Jitter: tt.j, Clock: clk, Rand: func() float64 { return 0.5 }}
			ch := start(context.Background(), p, a.fn)
			for _, w := range tt.waits {
				step(t, clk, w)
			}
			if r := finish(t, ch); r.err != nil || r.v != 4 {
				t.Fatalf("Do = (%d, %v), want (4, nil)", r.v, r.err)
			}
		})
	}
}

func TestDoMaxAttempts(t *testing.T) {
	clk := fakeclock.New(epoch)
	a := &attempts{clk: clk, errs: []error{errConn, errConn, errConn}}
	rec := &recorder{}
	p := retry.Policy{Name: "op", MaxAttempts: 3, Jitter: retry.JitterNone, Clock: clk, OnEvent: rec.on}
	ch := start(context.Background(), p, a.fn)
	step(t, clk, 100*time.Millisecond)
	step(t, clk, 200*time.Millisecond)
	r := finish(t, ch)

	var re *retry.Error
	if !errors.As(r.err, &re) {
		t.Fatalf("Do error = %v, want a *retry.Error", r.err)
	}
	if re.Reason != retry.ReasonAttempts || re.Attempts != 3 || re.Last != errConn {
		t.Errorf("got Reason=%v Attempts=%d Last=%v, want %v 3 %v", re.Reason, re.Attempts, re.Last, retry.ReasonAttempts, errConn)
	}
	if !errors.Is(r.err, retry.ErrExhausted) || !errors.Is(r.err, syscall.ECONNREFUSED) {
		t.Errorf("errors.Is(err, ErrExhausted/ECONNREFUSED) = %v/%v, want true/true",
			errors.Is(r.err, retry.ErrExhausted), errors.Is(r.err, syscall.ECONNREFUSED))
	}
	if errors.Is(r.err, retry.ErrBudget) {
		t.Error("errors.Is(err, ErrBudget) = true, want false")
	}
	if r.v != 3 {
		t.Errorf("result = %d, want the last attempt's 3", r.v)
	}
	if want := "retry: op: gave up after 3 attempts: " + errConn.Error(); r.err.Error() != want {
		t.Errorf("message = %q, want %q", r.err.Error(), want)
	}
	evs := rec.get()
	if last := evs[len(evs)-1]; last.WillRetry || last.Backoff != 0 || last.Attempt != 3 {
		t.Errorf("last event = %+v, want Attempt 3, WillRetry false, Backoff 0", last)
	}
}

func TestDoSingleAttempt(t *testing.T) {
	calls := 0
	_, err := retry.Do(context.Background(), retry.Policy{MaxAttempts: 1}, func(context.Context) (int, error) {
		calls++
		return 0, errConn
	})
	if calls != 1 || !errors.Is(err, retry.ErrExhausted) {
		t.Fatalf("MaxAttempts 1: calls=%d err=%v, want 1 call and ErrExhausted", calls, err)
	}
}

func TestDoNotRetryable(t *testing.T) {
	boom := errors.New("boom")
	notFound := &retry.StatusError{StatusCode: 404}
	tests := []struct {
		name      string
		retryable func(error) bool
		errs      []error
		wantCalls int
		wantErr   error
	}{
		{"Permanent", nil, []error{retry.Permanent(boom)}, 1, boom},
		{"HTTP 404", nil, []error{notFound}, 1, notFound},
		{"custom predicate refuses", func(error) bool { return false }, []error{errConn}, 1, errConn},
		{"Transient overrides predicate", func(error) bool { return false }, []error{retry.Transient(boom)}, 2, nil},
		{"Permanent overrides predicate", func(error) bool { return true }, []error{retry.Permanent(boom)}, 1, boom},
		{"extended predicate", func(err error) bool {
			return !errors.Is(err, boom) && retry.DefaultRetryable(err)
		}, []error{errConn, boom}, 2, boom},
	}
	for _, tt := range tests {
		tt := tt
		t.Run(tt.name, func(t *testing.T) {
			clk := fakeclock.New(epoch)
			a := &attempts{clk: clk, errs: tt.errs}
			p := retry.Policy{Retryable: tt.retryable, Clock: clk, Jitter: retry.JitterNone}
			ch := start(context.Background(), p, a.fn)
			for i := 1; i < tt.wantCalls; i++ {
				step(t, clk, time.Duration(1<<(i-1))*100*time.Millisecond)
			}
			r := finish(t, ch)
			if got := len(a.at()); got != tt.wantCalls {
				t.Errorf("calls = %d, want %d", got, tt.wantCalls)
			}
			if tt.wantErr == nil {
				if r.err != nil {
					t.Errorf("Do error = %v, want nil", r.err)
				}
				return
			}
			if !errors.Is(r.err, tt.wantErr) {
				t.Errorf("Do error = %v, want %v", r.err, tt.wantErr)
			}
			if errors.Is(r.err, retry.ErrExhausted) {
				t.Errorf("Do error %v matches ErrExhausted, want the error as returned", r.err)
			}
		})
	}
}

func TestDoRetryAfter(t *testing.T) {
	// The date form is parsed against the clock when the attempt fails, as a
	// transport would.
	tests := []struct {
		name     string
		err      func(now time.Time) error
		policy   retry.Policy
		wantWait time.Duration
		wantRA   time.Duration
	}{
		{"delay-seconds", func(now time.Time) error {
			return &retry.StatusError{StatusCode: 503, RetryAfter: mustParse(t, "3", now)}
		}, retry.Policy{}, 3 * time.Second, 3 * time.Second},
		{"HTTP-date", func(now time.Time) error {
			d := mustParse(t, now.Add(7*time.Second).Format(http.TimeFormat), now)
			return fmt.Errorf("GET /: %w", &retry.StatusError{StatusCode: 429, RetryAfter: d})
		}, retry.Policy{}, 7 * time.Second, 7 * time.Second},
		{"capped by MaxDelay", func(time.Time) error {
			return &retry.StatusError{StatusCode: 503, RetryAfter: time.Minute}
		}, retry.Policy{MaxDelay: 5 * time.Second}, 5 * time.Second, time.Minute},
		{"RetryAfter method", func(time.Time) error {
			return fmt.Errorf("call: %w", retryAfterErr{"busy", 1500 * time.Millisecond})
		}, retry.Policy{}, 1500 * time.Millisecond, 1500 * time.Millisecond},
		{"zero Retry-After on 503 uses backoff", func(time.Time) error {
			return &retry.StatusError{StatusCode: 503}
		}, retry.Policy{}, 100 * time.Millisecond, 0},
	}
	for _, tt := range tests {
		tt := tt
		t.Run(tt.name, func(t *testing.T) {
			clk := fakeclock.New(epoch)
			rec := &recorder{}
			calls := 0
			p := tt.policy
			p.Clock, p.OnEvent, p.Jitter = clk, rec.on, retry.JitterNone
			ch := start(context.Background(), p, func(context.Context) (int, error) {
				calls++
				if calls == 1 {
					return 0, tt.err(clk.Now())
				}
				return calls, nil
			})
			step(t, clk, tt.wantWait)
			if r := finish(t, ch); r.err != nil {
				t.Fatalf("Do error = %v, want nil", r.err)
			}
			ev := rec.get()[0]
			if ev.Backoff != tt.wantWait || ev.RetryAfter != tt.wantRA {
				t.Errorf("event Backoff=%v RetryAfter=%v, want %v %v", ev.Backoff, ev.RetryAfter, tt.wantWait, tt.wantRA)
			}
		})
	}
}

// TestDoStopsWhenTheWaitDoesNotFit: a wait that would end past ctx's
// deadline, or a Retry-After past MaxElapsed, ends Do at once with the last
// result, instead of a sleep that can only end in failure (or in an attempt
// earlier than the server asked for).
func TestDoStopsWhenTheWaitDoesNotFit(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		policy     retry.Policy
		timeout    time.Duration // ctx's deadline from now; 0: none
		wantReason retry.Reason
		wantWait   time.Duration
		wantMsg    string
	}{
		{"Retry-After past ctx's deadline", &retry.StatusError{StatusCode: 503, RetryAfter: 5 * time.Second},
			retry.Policy{}, 2 * time.Second, retry.ReasonDeadline, 5 * time.Second,
			"retry: op: gave up after 1 attempt: the next attempt, due in 5s, would start past the context's deadline: retry: HTTP 503 Service Unavailable (retry after 5s)"},
		{"backoff past ctx's deadline", errConn,
			retry.Policy{BaseDelay: 3 * time.Second}, 2 * time.Second, retry.ReasonDeadline, 3 * time.Second, ""},
		{"Retry-After past MaxElapsed", &retry.StatusError{StatusCode: 429, RetryAfter: 8 * time.Second},
			retry.Policy{MaxElapsed: 6 * time.Second}, 0, retry.ReasonElapsed, 8 * time.Second,
			"retry: op: max elapsed time reached after 1 attempt in 0s (the next attempt was due in 8s): retry: HTTP 429 Too Many Requests (retry after 8s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := fakeclock.New(epoch)
			rec := &recorder{}
			p := tt.policy
			p.Name, p.Clock, p.OnEvent, p.Jitter = "op", clk, rec.on, retry.JitterNone
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			calls := 0
			v, err := retry.Do(ctx, p, func(context.Context) (int, error) {
				calls++
				return 42, tt.err
			})
			var re *retry.Error
			if !errors.As(err, &re) || re.Reason != tt.wantReason || re.Wait != tt.wantWait || re.Attempts != 1 {
				t.Fatalf("Do error = %#v, want %v after 1 attempt, Wait %v", err, tt.wantReason, tt.wantWait)
			}
			if v != 42 || calls != 1 || !errors.Is(err, retry.ErrExhausted) || !errors.Is(err, tt.err) {
				t.Errorf("got %d after %d calls, err %v; want the last result 42 after 1 call, matching ErrExhausted and the attempt's error", v, calls, err)
			}
			if tt.wantMsg != "" && err.Error() != tt.wantMsg {
				t.Errorf("message:\n got %q\nwant %q", err.Error(), tt.wantMsg)
			}
			if evs := rec.get(); len(evs) != 1 || evs[0].WillRetry {
				t.Errorf("events = %+v, want one that says no retry follows", evs)
			}
		})
	}
}

func mustParse(t *testing.T, value string, now time.Time) time.Duration {
	t.Helper()
	d, ok := retry.ParseRetryAfter(value, now)
	if !ok {
		t.Fatalf("ParseRetryAfter(%q) failed", value)
	}
	return d
}

type retryAfterErr struct {
	msg string
	d   time.Duration
}

func (e retryAfterErr) Error() string             { return e.msg }
func (e retryAfterErr) RetryAfter() time.Duration { return e.d }

func TestDoRateLimitBacksOffLonger(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		policy retry.Policy
		want   time.Duration
	}{
		{"503", &retry.StatusError{StatusCode: 503}, retry.Policy{}, 100 * time.Millisecond},
		{"429 default factor", &retry.StatusError{StatusCode: 429}, retry.Policy{}, 400 * time.Millisecond},
		{"429 factor 10", &retry.StatusError{StatusCode: 429}, retry.Policy{RateLimitFactor: 10}, time.Second},
		{"429 capped", &retry.StatusError{StatusCode: 429}, retry.Policy{BaseDelay: time.Second, MaxDelay: 2 * time.Second}, 2 * time.Second},
	}
	for _, tt := range tests {
		tt := tt
		t.Run(tt.name, func(t *testing.T) {
			clk := fakeclock.New(epoch)
			a := &attempts{clk: clk, errs: []error{tt.err}}
			p := tt.policy
			p.Clock, p.Jitter = clk, retry.JitterNone
			ch := start(context.Background(), p, a.fn)
			step(t, clk, tt.want)
			if r := finish(t, ch); r.err != nil {
				t.Fatalf("Do error = %v, want nil", r.err)
			}
		})
	}
}

func TestDoMaxElapsed(t *testing.T) {
	clk := fakeclock.New(epoch)
	a := &attempts{clk: clk, errs: []error{errConn, errConn, errConn, errConn, errConn}}
	p := retry.Policy{Name: "op", MaxAttempts: 5, MaxElapsed: 250 * time.Millisecond, Jitter: retry.JitterNone, Clock: clk}
	ch := start(context.Background(), p, a.fn)
	step(t, clk, 100*time.Millisecond) // attempt 2 at 100ms
	step(t, clk, 150*time.Millisecond) // 200ms shortened to end at 250ms
	r := finish(t, ch)
	var re *retry.Error
	if !errors.As(r.err, &re) || re.Reason != retry.ReasonElapsed || re.Attempts != 3 || re.Elapsed != 250*time.Millisecond {
		t.Fatalf("Do error = %#v, want ReasonElapsed after 3 attempts in 250ms", r.err)
	}
	if !errors.Is(r.err, retry.ErrExhausted) {
		t.Errorf("errors.Is(err, ErrExhausted) = false, want true")
	}
	if want := []time.Duration{0, 100 * time.Millisecond, 250 * time.Millisecond}; !equalDurations(a.at(), want) {
		t.Errorf("attempt times = %v, want %v", a.at(), want)
	}
}

func TestDoMaxElapsedSlowAttempt(t *testing.T) {
	// An attempt that itself outlasts MaxElapsed ends the retries.
	clk := fakeclock.New(epoch)
	calls := 0
	p := retry.Policy{MaxAttempts: 5, MaxElapsed: time.Second, Clock: clk}
	_, err := retry.Do(context.Background(), p, func(context.Context) (int, error) {
		calls++
		clk.Advance(2 * time.Second)
		return 0, errConn
	})
	var re *retry.Error
	if !errors.As(err, &re) || re.Reason != retry.ReasonElapsed || calls != 1 {
		t.Fatalf("got err=%v calls=%d, want ReasonElapsed after 1 call", err, calls)
	}
}

func TestDoContextCancelledMidWait(t *testing.T) {
	clk := fakeclock.New(epoch)
	a := &attempts{clk: clk, errs: []error{errConn, errConn}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := start(ctx, retry.Policy{Name: "op", Clock: clk}, a.fn)
	if err := clk.BlockUntilContext(guard(t), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	r := finish(t, ch)
	if !errors.Is(r.err, context.Canceled) || !errors.Is(r.err, syscall.ECONNREFUSED) {
		t.Errorf("Do error = %v, want it to match context.Canceled and the last error", r.err)
	}
	if errors.Is(r.err, retry.ErrExhausted) {
		t.Errorf("Do error %v matches ErrExhausted, want not", r.err)
	}
	if !strings.HasPrefix(r.err.Error(), "retry: op: stopped after 1 attempt: context canceled") {
		t.Errorf("message = %q", r.err.Error())
	}
	if n := len(a.at()); n != 1 {
		t.Errorf("attempts = %d, want 1", n)
	}
}

func TestDoContextDoneBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	_, err := retry.Do(ctx, retry.Policy{}, func(context.Context) (int, error) { calls++; return 0, nil })
	if !errors.Is(err, context.Canceled) || calls != 0 {
		t.Fatalf("got err=%v calls=%d, want context.Canceled and 0 calls", err, calls)
	}
}

func TestDoDeadlineExceeded(t *testing.T) {
	// An attempt whose own timeout expired is retried.
	clk := fakeclock.New(epoch)
	calls := 0
	ch := start(context.Background(), retry.Policy{Clock: clk, Jitter: retry.JitterNone}, func(ctx context.Context) (int, error) {
		calls++
		if calls == 2 {
			return calls, nil
		}
		actx, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
		defer cancel()
		<-actx.Done()
		return 0, actx.Err()
	})
	step(t, clk, 100*time.Millisecond)
	if r := finish(t, ch); r.err != nil || r.v != 2 {
		t.Fatalf("per-attempt timeout: Do = (%d, %v), want (2, nil)", r.v, r.err)
	}

	// The caller's own deadline is not retried: the attempt that saw it
	// expire is the last.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	calls = 0
	_, err := retry.Do(ctx, retry.Policy{Clock: clk}, func(ctx context.Context) (int, error) {
		calls++
		<-ctx.Done() // the attempt runs until the caller's deadline
		return 0, ctx.Err()
	})
	if calls != 1 || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, retry.ErrExhausted) {
		t.Fatalf("caller ctx ended during attempt: calls=%d err=%v, want 1 call and the ctx's error", calls, err)
	}

	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	calls = 0
	_, err = retry.Do(expired, retry.Policy{Clock: clk}, func(context.Context) (int, error) { calls++; return 0, nil })
	if calls != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired caller ctx: calls=%d err=%v, want 0 calls and DeadlineExceeded", calls, err)
	}
}

// gate is a fake Gate refusing with errs[i] on the i-th check (nil allows);
// checks past the end allow.
type gate struct {
	mu     sync.Mutex
	errs   []error
	checks int
}

func (g *gate) Check(context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.checks++
	if g.checks <= len(g.errs) {
		return g.errs[g.checks-1]
	}
	return nil
}

var errOpen = errors.New("breaker: circuit open")

// openError is what a breaker returns: matches errOpen, says when to probe.
type openError struct{ wait time.Duration }

func (e *openError) Error() string             { return fmt.Sprintf("breaker: circuit open for %v", e.wait) }
func (e *openError) Unwrap() error             { return errOpen }
func (e *openError) RetryAfter() time.Duration { return e.wait }

func refusing(wait time.Duration) *gate {
	errs := make([]error, 100)
	for i := range errs {
		errs[i] = &openError{wait}
	}
	return &gate{errs: errs}
}

func TestDoGateRefusesAtOnce(t *testing.T) {
	// The real clock: any wait would show in the duration.
	fastest := time.Hour
	for i := 0; i < 5; i++ {
		g := refusing(3200 * time.Millisecond)
		calls := 0
		rec := &recorder{}
		begin := time.Now()
		_, err := retry.Do(context.Background(), retry.Policy{Name: "GET /", Gate: g, OnEvent: rec.on},
			func(context.Context) (int, error) { calls++; return 0, nil })
		fastest = min(fastest, time.Since(begin))
		if calls != 0 {
			t.Fatalf("attempts = %d, want 0", calls)
		}
		if !errors.Is(err, retry.ErrExhausted) || !errors.Is(err, errOpen) {
			t.Fatalf("Do error = %v, want it to match ErrExhausted and the gate's error", err)
		}
		var re *retry.Error
		if !errors.As(err, &re) || re.Reason != retry.ReasonGate || re.Attempts != 0 || re.RetryAfter != 3200*time.Millisecond {
			t.Fatalf("Do error = %#v, want ReasonGate, 0 attempts, RetryAfter 3.2s", err)
		}
		want := "retry: GET /: gate refused attempt 1 (next attempt possible in 3.2s): breaker: circuit open for 3.2s"
		if err.Error() != want {
			t.Fatalf("message = %q, want %q", err.Error(), want)
		}
		evs := rec.get()
		if len(evs) != 1 || !evs[0].GateRefused || evs[0].WillRetry || evs[0].Attempt != 1 || evs[0].RetryAfter != 3200*time.Millisecond {
			t.Fatalf("events = %+v, want one gate refusal of attempt 1, no retry", evs)
		}
	}
	if fastest > time.Millisecond {
		t.Errorf("Do took %v with a refusing gate, want under 1ms", fastest)
	}
}

func TestDoGateRefusesLaterAttempt(t *testing.T) {
	clk := fakeclock.New(epoch)
	g := &gate{errs: []error{nil, errOpen}} // no RetryAfter
	a := &attempts{clk: clk, errs: []error{errConn}}
	ch := start(context.Background(), retry.Policy{Gate: g, Clock: clk, Jitter: retry.JitterNone}, a.fn)
	step(t, clk, 100*time.Millisecond)
	r := finish(t, ch)
	var re *retry.Error
	if !errors.As(r.err, &re) || re.Reason != retry.ReasonGate || re.Attempts != 1 || re.Last != errConn || re.RetryAfter != 0 {
		t.Fatalf("Do error = %#v, want ReasonGate after 1 attempt with the last error", r.err)
	}
	if !errors.Is(r.err, errOpen) || !errors.Is(r.err, syscall.ECONNREFUSED) {
		t.Errorf("Do error %v does not match both the gate's and the attempt's error", r.err)
	}
	if want := "retry: gate refused attempt 2: breaker: circuit open; last error: " + errConn.Error(); r.err.Error() != want {
		t.Errorf("message = %q, want %q", r.err.Error(), want)
	}
	if g.checks != 2 {
		t.Errorf("gate checks = %d, want 2", g.checks)
	}
}

func TestDoWaitForGate(t *testing.T) {
	clk := fakeclock.New(epoch)
	g := &gate{errs: []error{&openError{2 * time.Second}, &openError{500 * time.Millisecond}}}
	rec := &recorder{}
	a := &attempts{clk: clk}
	p := retry.Policy{Gate: g, WaitForGate: true, MaxElapsed: 10 * time.Second, Clock: clk, OnEvent: rec.on}
	ch := start(context.Background(), p, a.fn)
	step(t, clk, 2*time.Second)
	step(t, clk, 500*time.Millisecond)
	if r := finish(t, ch); r.err != nil || r.v != 1 {
		t.Fatalf("Do = (%d, %v), want (1, nil)", r.v, r.err)
	}
	if want := []time.Duration{2500 * time.Millisecond}; !equalDurations(a.at(), want) {
		t.Errorf("attempt times = %v, want %v", a.at(), want)
	}
	evs := rec.get()
	if len(evs) != 3 || !evs[0].GateRefused || !evs[0].WillRetry || evs[0].Backoff != 2*time.Second || evs[0].Attempt != 1 {
		t.Errorf("events = %+v, want two gate waits then a success", evs)
	}
}

func TestDoGateNotWaitedFor(t *testing.T) {
	clk := fakeclock.New(epoch)
	tests := []struct {
		name string
		err  error
		wait bool
	}{
		{"probe after MaxElapsed", &openError{20 * time.Second}, true},
		{"no RetryAfter", errOpen, true},
		{"WaitForGate off", &openError{time.Second}, false},
	}
	for _, tt := range tests {
		g := &gate{errs: []error{tt.err}}
		calls := 0
		p := retry.Policy{Gate: g, WaitForGate: tt.wait, MaxElapsed: 10 * time.Second, Clock: clk}
		_, err := retry.Do(context.Background(), p, func(context.Context) (int, error) { calls++; return 0, nil })
		var re *retry.Error
		if !errors.As(err, &re) || re.Reason != retry.ReasonGate || calls != 0 {
			t.Errorf("%s: got err=%v calls=%d, want ReasonGate and 0 calls", tt.name, err, calls)
		}
	}
}

func TestDoWaitForGateCancelled(t *testing.T) {
	clk := fakeclock.New(epoch)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := retry.Policy{Gate: refusing(time.Second), WaitForGate: true, MaxElapsed: time.Minute, Clock: clk}
	ch := start(ctx, p, func(context.Context) (int, error) { return 1, nil })
	if err := clk.BlockUntilContext(guard(t), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if r := finish(t, ch); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Do error = %v, want context.Canceled", r.err)
	}
}

// budget is a fake Budget allowing a fixed number of retries.
type budget struct {
	mu       sync.Mutex
	allow    int
	requests int
	asks     int
}

func (b *budget) OnRequest() { b.mu.Lock(); b.requests++; b.mu.Unlock() }

func (b *budget) AllowRetry(context.Context) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.asks++
	if b.allow > 0 {
		b.allow--
		return true
	}
	return false
}

func TestDoBudget(t *testing.T) {
	clk := fakeclock.New(epoch)
	b := &budget{allow: 1}
	a := &attempts{clk: clk, errs: []error{errConn, errConn, errConn}}
	rec := &recorder{}
	p := retry.Policy{Name: "op", MaxAttempts: 5, Budget: b, Clock: clk, Jitter: retry.JitterNone, OnEvent: rec.on}
	ch := start(context.Background(), p, a.fn)
	step(t, clk, 100*time.Millisecond)
	r := finish(t, ch)
	if !errors.Is(r.err, retry.ErrBudget) || !errors.Is(r.err, retry.ErrExhausted) || !errors.Is(r.err, syscall.ECONNREFUSED) {
		t.Fatalf("Do error = %v, want it to match ErrBudget, ErrExhausted and the last error", r.err)
	}
	var re *retry.Error
	if !errors.As(r.err, &re) || re.Reason != retry.ReasonBudget || re.Attempts != 2 {
		t.Fatalf("Do error = %#v, want ReasonBudget after 2 attempts", r.err)
	}
	if want := "retry: op: retry budget exhausted after 2 attempts: " + errConn.Error(); r.err.Error() != want {
		t.Errorf("message = %q, want %q", r.err.Error(), want)
	}
	if b.requests != 1 || b.asks != 2 {
		t.Errorf("OnRequest calls = %d, AllowRetry calls = %d, want 1 and 2", b.requests, b.asks)
	}
	evs := rec.get()
	if last := evs[len(evs)-1]; last.WillRetry {
		t.Errorf("last event WillRetry = true, want false after the budget refused")
	}
}

func TestDoBudgetAccounting(t *testing.T) {
	tests := []struct {
		name         string
		errs         []error
		gate         retry.Gate
		wantRequests int
		wantAsks     int
	}{
		{"first attempt succeeds", nil, nil, 1, 0},
		{"one retry", []error{errConn}, nil, 1, 1},
		{"permanent error", []error{retry.Permanent(errConn)}, nil, 1, 0},
		{"gate refuses first attempt", nil, refusing(time.Second), 0, 0},
	}
	for _, tt := range tests {
		clk := fakeclock.New(epoch)
		b := &budget{allow: 10}
		a := &attempts{clk: clk, errs: tt.errs}
		ch := start(context.Background(), retry.Policy{Budget: b, Gate: tt.gate, Clock: clk, Jitter: retry.JitterNone}, a.fn)
		for i := 0; i < len(tt.errs) && tt.gate == nil && tt.wantAsks > 0; i++ {
			step(t, clk, 100*time.Millisecond)
		}
		finish(t, ch)
		if b.requests != tt.wantRequests || b.asks != tt.wantAsks {
			t.Errorf("%s: OnRequest=%d AllowRetry=%d, want %d %d", tt.name, b.requests, b.asks, tt.wantRequests, tt.wantAsks)
		}
	}
}

func TestDoNestedDoesNotMultiply(t *testing.T) {
	clk := fakeclock.New(epoch)
	inner := 0
	outer := 0
	_, err := retry.Do(context.Background(), retry.Policy{Clock: clk}, func(ctx context.Context) (int, error) {
		outer++
		return retry.Do(ctx, retry.Policy{Clock: clk, MaxAttempts: 1}, func(context.Context) (int, error) {
			inner++
			return 0, errConn
		})
	})
	if outer != 1 || inner != 1 || !errors.Is(err, retry.ErrExhausted) {
		t.Fatalf("outer=%d inner=%d err=%v, want 1 1 and ErrExhausted", outer, inner, err)
	}
}

func TestDoInvalidInput(t *testing.T) {
	calls := 0
	fn := func(context.Context) (int, error) { calls++; return 1, nil }
	_, err := retry.Do(context.Background(), retry.Policy{Multiplier: 0.5}, fn)
	if !errors.Is(err, retry.ErrInvalidPolicy) || calls != 0 {
		t.Errorf("invalid policy: err=%v calls=%d, want ErrInvalidPolicy and 0 calls", err, calls)
	}
	if _, err := retry.Do[int](context.Background(), retry.Policy{}, nil); err == nil {
		t.Error("nil fn: err = nil, want an error")
	}
	//lint:ignore SA1012 checking that a nil context is refused, not panicked on
	if _, err := retry.Do(nil, retry.Policy{}, fn); err == nil || calls != 0 {
		t.Errorf("nil ctx: err=%v calls=%d, want an error and 0 calls", err, calls)
	}
}

func TestDoRealClock(t *testing.T) {
	calls := 0
	v, err := retry.Do(context.Background(), retry.Policy{BaseDelay: time.Microsecond, MaxDelay: time.Millisecond},
		func(context.Context) (int, error) {
			calls++
			if calls < 3 {
				return 0, errConn
			}
			return calls, nil
		})
	if v != 3 || err != nil {
		t.Fatalf("Do = (%d, %v), want (3, nil)", v, err)
	}

	// A long real wait ends as soon as ctx is cancelled (from the event hook,
	// which runs just before the wait).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := retry.Policy{BaseDelay: time.Hour, MaxDelay: time.Hour, Jitter: retry.JitterNone,
		OnEvent: func(ev retry.Event) {
			if ev.WillRetry {
				cancel()
			}
		}}
	_, err = retry.Do(ctx, p, func(context.Context) (int, error) { return 0, errConn })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Do error = %v, want context.Canceled", err)
	}
}

// A retry the budget pays for is one Do makes: a wait that does not fit in
// MaxElapsed or before ctx's deadline stops Do before it asks the budget.
func TestDoBudgetNotSpentOnARetryNotMade(t *testing.T) {
	tests := []struct {
		name    string
		policy  retry.Policy
		timeout time.Duration
		reason  retry.Reason
	}{
		{"Retry-After past MaxElapsed", retry.Policy{MaxElapsed: time.Second}, 0, retry.ReasonElapsed},
		{"Retry-After past ctx's deadline", retry.Policy{}, 2 * time.Second, retry.ReasonDeadline},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &budget{allow: 10}
			p := tt.policy
			p.Budget, p.Clock = b, fakeclock.New(epoch)
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			_, err := retry.Do(ctx, p, func(context.Context) (int, error) {
				return 0, &retry.StatusError{StatusCode: 503, RetryAfter: 5 * time.Second}
			})
			var re *retry.Error
			if !errors.As(err, &re) || re.Reason != tt.reason {
				t.Fatalf("Do error = %v, want %v", err, tt.reason)
			}
			if b.requests != 1 || b.asks != 0 || b.allow != 10 {
				t.Errorf("OnRequest=%d AllowRetry=%d (%d of 10 left), want 1 request and no retry asked for", b.requests, b.asks, b.allow)
			}
		})
	}
}

// MaxDelay as large as a Duration goes ("no cap") and a wait as large
// (a Retry-After far in the future, a gate that opens in ages): MaxElapsed
// still stops Do at once, without an overflow that would make it sleep.
func TestDoHugeWaitsStillEndAtMaxElapsed(t *testing.T) {
	const forever = time.Duration(math.MaxInt64)
	clk := fakeclock.New(epoch)
	calls := 0
	slow := func(context.Context) (int, error) { // an attempt takes 10ms
		calls++
		clk.Advance(10 * time.Millisecond)
		return 0, &retry.StatusError{StatusCode: 503, RetryAfter: forever}
	}
	r := finish(t, start(context.Background(), retry.Policy{MaxDelay: forever, MaxElapsed: time.Second, MaxAttempts: 5, Clock: clk}, slow))
	var re *retry.Error
	if !errors.As(r.err, &re) || re.Reason != retry.ReasonElapsed || calls != 1 {
		t.Errorf("Retry-After of %v: Do = %v after %d calls, want ReasonElapsed after 1", forever, r.err, calls)
	}

	calls = 0
	g := slowGate{clk, &openError{forever}} // a check takes 10ms
	r = finish(t, start(context.Background(), retry.Policy{Gate: g, WaitForGate: true, MaxElapsed: time.Second, Clock: clk},
		func(context.Context) (int, error) { calls++; return 0, nil }))
	if !errors.As(r.err, &re) || re.Reason != retry.ReasonGate || !errors.Is(r.err, errOpen) || calls != 0 {
		t.Errorf("gate open for %v: Do = %v after %d calls, want ReasonGate matching the gate's error, no call", forever, r.err, calls)
	}
}

// slowGate refuses with err after 10ms on clk.
type slowGate struct {
	clk *fakeclock.Clock
	err error
}

func (g slowGate) Check(context.Context) error {
	g.clk.Advance(10 * time.Millisecond)
	return g.err
}

// WaitForGate does not sleep for a gate that opens past ctx's deadline: Do
// returns the gate's refusal at once.
func TestDoWaitForGatePastTheDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	g := refusing(5 * time.Second)
	rec := &recorder{}
	p := retry.Policy{Gate: g, WaitForGate: true, MaxElapsed: time.Minute, Clock: fakeclock.New(epoch), OnEvent: rec.on}
	_, err := retry.Do(ctx, p, func(context.Context) (int, error) { return 1, nil })
	var re *retry.Error
	if !errors.As(err, &re) || re.Reason != retry.ReasonGate || re.RetryAfter != 5*time.Second ||
		!errors.Is(err, errOpen) || !errors.Is(err, retry.ErrExhausted) {
		t.Fatalf("Do error = %#v, want ReasonGate matching the gate's error and ErrExhausted, RetryAfter 5s", err)
	}
	if g.checks != 1 {
		t.Errorf("gate asked %d times, want 1", g.checks)
	}
	if evs := rec.get(); len(evs) != 1 || evs[0].WillRetry || !evs[0].GateRefused {
		t.Errorf("events = %+v, want one gate refusal with no wait", evs)
	}
}
