package store_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/internal/fakeclock"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/lua"
	"github.com/breakwater-go/breakwater/retry"
	"github.com/breakwater-go/breakwater/store"
)

// A RetryBudget is a retry.Budget.
var _ retry.Budget = (*store.RetryBudget)(nil)

var errDown = errors.New("dependency down")

// budgetEnv is a fleet on miniredis whose Redis clock and local clock move
// together, only when the test says so.
type budgetEnv struct {
	t     *testing.T
	m     *miniredis.Miniredis
	now   time.Time
	clock *fakeclock.Clock
}

func newBudgetEnv(t *testing.T) *budgetEnv {
	t.Helper()
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	e := &budgetEnv{t: t, m: miniredis.RunT(t), now: start, clock: fakeclock.New(start)}
	e.m.SetTime(start)
	return e
}

func (e *budgetEnv) advance(d time.Duration) {
	e.now = e.now.Add(d)
	e.m.SetTime(e.now)
	e.clock.Advance(d)
}

func (e *budgetEnv) client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: e.m.Addr(), MaxRetries: -1})
	e.t.Cleanup(func() { c.Close() })
	return c
}

// budget returns an instance's budget with its own client, on the fake clock.
func (e *budgetEnv) budget(name string, o store.BudgetOptions) *store.RetryBudget {
	e.t.Helper()
	if o.Prefix == "" {
		o.Prefix = "t-" + strings.ReplaceAll(e.t.Name(), " ", "_")
	}
	if o.Clock == nil {
		o.Clock = e.clock
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second // generous: these tests are not about a slow Redis
	}
	b, err := store.NewRetryBudget(e.client(), name, o)
	if err != nil {
		e.t.Fatalf("NewRetryBudget: %v", err)
	}
	e.t.Cleanup(func() { b.Close() })
	return b
}

// allowAll calls AllowRetry until it refuses (at most max times) and
// returns how many it allowed.
func allowAll(t *testing.T, b *store.RetryBudget, max int) int {
	t.Helper()
	n := 0
	for n < max && b.AllowRetry(context.Background()) {
		n++
	}
	return n
}

func requests(b *store.RetryBudget, n int) {
	for i := 0; i < n; i++ {
		b.OnRequest()
	}
}

// redisRequests sums the request counts of a budget's buckets in Redis.
func redisRequests(t *testing.T, m *miniredis.Miniredis, key string) int {
	t.Helper()
	fields, err := m.HKeys(key)
	if err != nil {
		t.Fatalf("HKEYS %s: %v", key, err)
	}
	sum := 0
	for _, f := range fields {
		if strings.HasPrefix(f, "r") {
			n, err := strconv.Atoi(m.HGet(key, f))
			if err != nil {
				t.Fatalf("%s field %s: %v", key, f, err)
			}
			sum += n
		}
	}
	return sum
}

func usage(t *testing.T, b *store.RetryBudget) store.BudgetUsage {
	t.Helper()
	u, err := b.Usage(context.Background())
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	return u
}

func TestNewRetryBudgetRejectsBadOptions(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer c.Close()
	tests := []struct {
		name   string
		budget string
		opts   store.BudgetOptions
		want   string
	}{
		{"prefix with braces", "b", store.BudgetOptions{Prefix: "a{b}"}, "BudgetOptions.Prefix"},
		{"prefix with space", "b", store.BudgetOptions{Prefix: "a b"}, "BudgetOptions.Prefix"},
		{"negative ratio", "b", store.BudgetOptions{Ratio: -0.1}, "BudgetOptions.Ratio"},
		{"NaN ratio", "b", store.BudgetOptions{Ratio: math.NaN()}, "BudgetOptions.Ratio"},
		{"huge ratio", "b", store.BudgetOptions{Ratio: 1e6}, "BudgetOptions.Ratio"},
		{"negative floor", "b", store.BudgetOptions{Floor: -2}, "BudgetOptions.Floor"},
		{"infinite floor", "b", store.BudgetOptions{Floor: math.Inf(1)}, "BudgetOptions.Floor"},
		{"negative window", "b", store.BudgetOptions{Window: -time.Second}, "BudgetOptions.Window"},
		{"window below 1ms a bucket", "b", store.BudgetOptions{Window: 5 * time.Millisecond, Buckets: 10}, "BudgetOptions.Window"},
		{"negative buckets", "b", store.BudgetOptions{Buckets: -1}, "BudgetOptions.Buckets"},
		{"too many buckets", "b", store.BudgetOptions{Buckets: 1001}, "BudgetOptions.Buckets"},
		{"negative batch", "b", store.BudgetOptions{Batch: -1}, "BudgetOptions.Batch"},
		{"negative flush interval", "b", store.BudgetOptions{FlushInterval: -1}, "BudgetOptions.FlushInterval"},
		{"tiny flush interval", "b", store.BudgetOptions{FlushInterval: time.Microsecond}, "BudgetOptions.FlushInterval"},
		{"negative timeout", "b", store.BudgetOptions{Timeout: -1}, "BudgetOptions.Timeout"},
		{"negative cooldown", "b", store.BudgetOptions{Cooldown: -1}, "BudgetOptions.Cooldown"},
		{"empty name", "", store.BudgetOptions{}, "non-empty name"},
		{"name with braces", "a{b}", store.BudgetOptions{}, "braces"},
		{"name with newline", "a\nb", store.BudgetOptions{}, "control characters"},
		{"long name", strings.Repeat("x", 513), store.BudgetOptions{}, "512 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := store.NewRetryBudget(c, tt.budget, tt.opts)
			if err == nil {
				b.Close()
				t.Fatalf("got no error, want one mentioning %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "store: ") {
				t.Errorf("got error %q, want one starting with %q and mentioning %q", err, "store: ", tt.want)
			}
		})
	}
	if _, err := store.NewRetryBudget(nil, "b", store.BudgetOptions{}); err == nil {
		t.Errorf("NewRetryBudget(nil client): got no error, want one")
	}
}

func TestRetryBudgetKey(t *testing.T) {
	e := newBudgetEnv(t)
	b := e.budget("payments", store.BudgetOptions{Prefix: "svc"})
	if got, want := b.Key(), "{svc:retry:payments}:v1:win"; got != want {
		t.Errorf("Key() = %q, want %q", got, want)
	}
	if got, want := b.Name(), "payments"; got != want {
		t.Errorf("Name() = %q, want %q", got, want)
	}
}

func TestRetryBudgetLimit(t *testing.T) {
	tests := []struct {
		name      string
		opts      store.BudgetOptions
		requests  int
		wantLimit int64
	}{
		{"ratio only", store.BudgetOptions{Ratio: 0.5, Floor: store.NoFloor}, 10, 5},
		{"ratio rounds down", store.BudgetOptions{Ratio: 0.5, Floor: store.NoFloor}, 11, 5},
		{"0.1 of 30 is 3", store.BudgetOptions{Ratio: 0.1, Floor: store.NoFloor}, 30, 3},
		{"floor only", store.BudgetOptions{Floor: 2, Window: 10 * time.Second}, 0, 20},
		{"ratio and floor", store.BudgetOptions{Ratio: 0.2, Floor: 1, Window: 5 * time.Second}, 12, 7},
		{"defaults", store.BudgetOptions{}, 100, 20 + 100},
		{"batch of one", store.BudgetOptions{Ratio: 0.5, Floor: store.NoFloor, Batch: 1}, 10, 5},
		{"batch larger than the limit", store.BudgetOptions{Ratio: 0.5, Floor: store.NoFloor, Batch: 50}, 10, 5},
		{"no requests, no floor", store.BudgetOptions{Ratio: 1, Floor: store.NoFloor}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newBudgetEnv(t)
			b := e.budget("dep", tt.opts)
			requests(b, tt.requests)
			if got := allowAll(t, b, 1000); int64(got) != tt.wantLimit {
				t.Errorf("retries allowed: got %d, want %d", got, tt.wantLimit)
			}
			u := usage(t, b)
			want := store.BudgetUsage{Requests: int64(tt.requests), Retries: tt.wantLimit, Limit: tt.wantLimit, NextSlide: u.NextSlide}
			if u != want {
				t.Errorf("Usage() = %+v, want %+v", u, want)
			}
			s := b.Stats()
			if s.Retries != uint64(tt.wantLimit) || s.Refused != 1 || s.LocalRetries != 0 || s.Tokens != 0 || s.Err != nil {
				t.Errorf("Stats() = %+v, want %d retries, 1 refused, 0 local, 0 tokens, no error", s, tt.wantLimit)
			}
		})
	}
}

func TestRetryBudgetIsSharedByTheFleet(t *testing.T) {
	e := newBudgetEnv(t)
	opts := store.BudgetOptions{Ratio: 0.5, Floor: store.NoFloor}
	a, b := e.budget("dep", opts), e.budget("dep", opts)
	other := e.budget("other", opts)

	requests(a, 10)
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := allowAll(t, b, 100); got != 5 {
		t.Errorf("b, with a's 10 requests: got %d retries, want 5", got)
	}
	if got := allowAll(t, a, 100); got != 0 {
		t.Errorf("a, after b used the budget: got %d retries, want 0", got)
	}
	if got := allowAll(t, other, 100); got != 0 {
		t.Errorf("another budget: got %d retries, want 0", got)
	}
}

func TestRetryBudgetOnRequestDoesNoIO(t *testing.T) {
	e := newBudgetEnv(t)
	b := e.budget("dep", store.BudgetOptions{})
	before := e.m.CommandCount()
	requests(b, 1000)
	if got := e.m.CommandCount() - before; got != 0 {
		t.Errorf("1000 OnRequest: got %d Redis commands, want 0", got)
	}
	if s := b.Stats(); s.Calls != 0 || s.Pending != 1000 || s.Requests != 1000 {
		t.Errorf("Stats() = %+v, want 0 calls, 1000 pending, 1000 requests", s)
	}
	if e.m.Exists(b.Key()) {
		t.Errorf("key %s exists before any flush", b.Key())
	}
	if got := usage(t, b).Requests; got != 1000 {
		t.Errorf("requests after Usage: got %d, want 1000", got)
	}
	if s := b.Stats(); s.Calls != 1 || s.Pending != 0 {
		t.Errorf("Stats() = %+v, want 1 call, 0 pending", s)
	}
}

func TestRetryBudgetClaimsInBatches(t *testing.T) {
	e := newBudgetEnv(t)
	b := e.budget("dep", store.BudgetOptions{Ratio: 1, Floor: store.NoFloor, Batch: 4})
	requests(b, 100)
	for i := 1; i <= 8; i++ {
		if !b.AllowRetry(context.Background()) {
			t.Fatalf("retry %d refused", i)
		}
	}
	if s := b.Stats(); s.Calls != 2 || s.Tokens != 0 || s.Retries != 8 {
		t.Errorf("after 8 retries: Stats() = %+v, want 2 calls, 0 tokens, 8 retries", s)
	}
	b.AllowRetry(context.Background())
	if s := b.Stats(); s.Calls != 3 || s.Tokens != 3 {
		t.Errorf("after 9 retries: Stats() = %+v, want 3 calls, 3 tokens", s)
	}
	// Claimed retries belong to their bucket: a bucket later they are gone.
	e.advance(time.Second)
	b.AllowRetry(context.Background())
	if s := b.Stats(); s.Calls != 4 || s.Tokens != 3 || s.Retries != 10 {
		t.Errorf("a bucket later: Stats() = %+v, want 4 calls, 3 tokens, 10 retries", s)
	}
	if u := usage(t, b); u.Retries != 16 {
		t.Errorf("retries in the window: got %d, want 16 (12 claimed before, 4 now)", u.Retries)
	}
}

func TestRetryBudgetRefusalIsCached(t *testing.T) {
	e := newBudgetEnv(t)
	b := e.budget("dep", store.BudgetOptions{Ratio: 0.1, Floor: store.NoFloor, Window: 10 * time.Second, Buckets: 10})
	requests(b, 10)
	if got := allowAll(t, b, 100); got != 1 {
		t.Fatalf("retries allowed: got %d, want 1", got)
	}
	calls := b.Stats().Calls
	check := func(step string, wantAllow bool, wantCalls uint64) {
		t.Helper()
		if got := b.AllowRetry(context.Background()); got != wantAllow {
			t.Errorf("%s: AllowRetry() = %v, want %v", step, got, wantAllow)
		}
		if got := b.Stats().Calls - calls; got != wantCalls {
			t.Errorf("%s: got %d calls to Redis since the refusal, want %d", step, got, wantCalls)
		}
	}
	check("refused again at once", false, 0)
	requests(b, 9)
	check("9 new requests earn less than a retry", false, 0)
	requests(b, 1)
	check("10 new requests earn one", true, 1)
	// That claim was granted less than a batch: the window is used up.
	check("refused after using it, from the cache", false, 1)
	// The refusal lasts until the window slides (the next bucket, 1 s).
	e.advance(999 * time.Millisecond)
	check("1 ms before the window slides", false, 1)
	e.advance(time.Millisecond)
	check("when the window slides", false, 2)
}

func TestRetryBudgetWindowSlides(t *testing.T) {
	e := newBudgetEnv(t)
	b := e.budget("dep", store.BudgetOptions{Ratio: 0.5, Floor: store.NoFloor, Window: 10 * time.Second, Buckets: 10, Batch: 1})
	steps := []struct {
		after       time.Duration
		requests    int
		wantRetries int
		want        store.BudgetUsage
	}{
		{0, 10, 5, store.BudgetUsage{Requests: 10, Retries: 5, Limit: 5}},
		{5 * time.Second, 10, 5, store.BudgetUsage{Requests: 20, Retries: 10, Limit: 10}},
		{4 * time.Second, 0, 0, store.BudgetUsage{Requests: 20, Retries: 10, Limit: 10}},
		// 10 s after the start, the first bucket has left the window.
		{time.Second, 4, 2, store.BudgetUsage{Requests: 14, Retries: 7, Limit: 7}},
		{5 * time.Second, 0, 0, store.BudgetUsage{Requests: 4, Retries: 2, Limit: 2}},
		{10 * time.Second, 0, 0, store.BudgetUsage{}},
	}
	for i, s := range steps {
		e.advance(s.after)
		requests(b, s.requests)
		got := allowAll(t, b, 100)
		u := usage(t, b)
		u.NextSlide = 0
		if got != s.wantRetries || u != s.want {
			t.Errorf("step %d: got %d retries and %+v, want %d and %+v", i, got, u, s.wantRetries, s.want)
		}
	}
}

func TestRetryBudgetFlushesPeriodically(t *testing.T) {
	e := newBudgetEnv(t)
	b := e.budget("dep", store.BudgetOptions{FlushInterval: time.Second})
	e.clock.BlockUntil(1) // the flush loop waits
	requests(b, 7)
	e.advance(time.Second)
	e.clock.BlockUntil(1) // it flushed and waits again
	if s := b.Stats(); s.Calls != 1 || s.Pending != 0 {
		t.Errorf("after one interval: Stats() = %+v, want 1 call, 0 pending", s)
	}
	if got := redisRequests(t, e.m, b.Key()); got != 7 {
		t.Errorf("requests in Redis: got %d, want 7", got)
	}
	e.advance(time.Second)
	e.clock.BlockUntil(1)
	if s := b.Stats(); s.Calls != 1 {
		t.Errorf("an interval with nothing to send: got %d calls, want 1", s.Calls)
	}
	if got, want := e.m.TTL(b.Key()), 20*time.Second; got != want {
		t.Errorf("idle expiry: got %v, want %v (two windows)", got, want)
	}
}

func TestRetryBudgetDecidesLocallyWhileRedisIsDown(t *testing.T) {
	e := newBudgetEnv(t)
	b := e.budget("dep", store.BudgetOptions{Ratio: 0.3, Floor: 100, Cooldown: time.Second})
	requests(b, 10)
	e.m.Close()
	if got := allowAll(t, b, 100); got != 3 {
		t.Errorf("retries allowed with Redis down: got %d, want 3 (0.3 × 10 local requests, no floor)", got)
	}
	s := b.Stats()
	if s.LocalRetries != 3 || s.Retries != 3 || s.Calls != 0 || s.Pending != 10 {
		t.Errorf("Stats() = %+v, want 3 local retries, 0 calls, 10 pending", s)
	}
	if !errors.Is(s.Err, store.ErrUnavailable) {
		t.Errorf("Stats().Err = %v, want one matching ErrUnavailable", s.Err)
	}
	// During the cooldown the budget fails fast, without trying Redis.
	if err := b.Flush(context.Background()); !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "failing fast") {
		t.Errorf("Flush during the cooldown: got %v, want a fast ErrUnavailable", err)
	}
	if err := e.m.Restart(); err != nil {
		t.Fatal(err)
	}
	e.advance(time.Second)
	u := usage(t, b)
	if want := (store.BudgetUsage{Requests: 10, Retries: 3, Limit: 3 + 1000, NextSlide: u.NextSlide}); u != want {
		t.Errorf("after Redis is back: Usage() = %+v, want %+v (the local counts sent)", u, want)
	}
	if got := allowAll(t, b, 2000); got != 1000 {
		t.Errorf("retries allowed after Redis is back: got %d, want 1000", got)
	}
}

func TestRetryBudgetForeignData(t *testing.T) {
	tests := []struct {
		name  string
		setup func(m *miniredis.Miniredis, key string)
	}{
		{"a string", func(m *miniredis.Miniredis, key string) { m.Set(key, "x") }},
		{"a bad field", func(m *miniredis.Miniredis, key string) { m.HSet(key, "r3", "many") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newBudgetEnv(t)
			b := e.budget("dep", store.BudgetOptions{Ratio: 0.5, Floor: store.NoFloor})
			tt.setup(e.m, b.Key())
			requests(b, 4)
			if _, err := b.Usage(context.Background()); !errors.Is(err, store.ErrCorrupt) {
				t.Errorf("Usage: got %v, want an error matching ErrCorrupt", err)
			}
			if got := allowAll(t, b, 100); got != 2 {
				t.Errorf("retries allowed: got %d, want 2, decided locally", got)
			}
			// Foreign data is no outage: every call tries Redis again.
			if s := b.Stats(); s.LocalRetries != 2 || !errors.Is(s.Err, store.ErrCorrupt) {
				t.Errorf("Stats() = %+v, want 2 local retries and ErrCorrupt", s)
			}
		})
	}
}

func TestRetryBudgetScriptRejectsBadArguments(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer c.Close()
	good := []interface{}{10000, 10, 0.2, 10, 0, 1, 0, 20000}
	tests := []struct {
		name string
		i    int
		v    interface{}
	}{
		{"window not a number", 0, "ten"},
		{"window below the buckets", 0, 5},
		{"no buckets", 1, 0},
		{"fractional buckets", 1, 2.5},
		{"negative ratio", 2, -1},
		{"infinite floor", 3, "inf"},
		{"fractional requests", 4, 1.5},
		{"negative want", 5, -1},
		{"zero idle expiry", 7, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]interface{}(nil), good...)
			args[tt.i] = tt.v
			err := c.Eval(context.Background(), lua.Budget(), []string{"{p:retry:x}:v1:win"}, args...).Err()
			if err == nil || !strings.Contains(err.Error(), "BWARGS") {
				t.Errorf("got %v, want a BWARGS error", err)
			}
		})
	}
	res, err := c.Eval(context.Background(), lua.Budget(), []string{"{p:retry:x}:v1:win"}, good...).Result()
	if err != nil {
		t.Fatalf("good arguments: %v", err)
	}
	if got := fmt.Sprint(res); !strings.HasPrefix(got, "[1 0 1 100 ") {
		t.Errorf("good arguments: got %v, want [1 0 1 100 <ms>]", got)
	}
}

func TestRetryBudgetClose(t *testing.T) {
	e := newBudgetEnv(t)
	b := e.budget("dep", store.BudgetOptions{Ratio: 1, Floor: store.NoFloor, Batch: 5})
	requests(b, 10)
	if !b.AllowRetry(context.Background()) {
		t.Fatal("retry refused")
	}
	requests(b, 3)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// The pending requests were sent; the unused claims were dropped.
	if got := redisRequests(t, e.m, b.Key()); got != 13 {
		t.Errorf("requests in Redis after Close: got %d, want 13", got)
	}
	if s := b.Stats(); s.Tokens != 0 || s.Pending != 0 {
		t.Errorf("Stats() after Close = %+v, want no tokens, nothing pending", s)
	}
	// After Close the budget decides locally: 13 requests, 1 retry made.
	if got := allowAll(t, b, 100); got != 12 {
		t.Errorf("retries after Close: got %d, want 12", got)
	}
}

func TestRetryBudgetStopsRetryDo(t *testing.T) {
	e := newBudgetEnv(t)
	b := e.budget("dep", store.BudgetOptions{Ratio: 1, Floor: store.NoFloor})
	calls := 0
	_, err := retry.Do(context.Background(), retry.Policy{MaxAttempts: 5, BaseDelay: time.Nanosecond, Budget: b},
		func(context.Context) (int, error) {
			calls++
			return 0, errDown
		})
	if !errors.Is(err, retry.ErrBudget) || !errors.Is(err, errDown) {
		t.Errorf("got %v, want an error matching retry.ErrBudget and the last error", err)
	}
	if calls != 2 {
		t.Errorf("got %d attempts, want 2 (1 request allows 1 retry)", calls)
	}
}

func TestRetryBudgetConcurrentUse(t *testing.T) {
	e := newBudgetEnv(t)
	const instances, workers, each = 3, 4, 100
	var budgets []*store.RetryBudget
	for i := 0; i < instances; i++ {
		budgets = append(budgets, e.budget("dep", store.BudgetOptions{Ratio: 0.5, Floor: store.NoFloor, Batch: 3}))
	}
	var wg sync.WaitGroup
	for _, b := range budgets {
		for w := 0; w < workers; w++ {
			b := b
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					b.OnRequest()
					b.AllowRetry(context.Background())
				}
			}()
		}
	}
	wg.Wait()
	var allowed, held int64
	for _, b := range budgets {
		s := b.Stats()
		allowed += int64(s.Retries)
		held += s.Tokens
		if err := b.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	u := usage(t, budgets[0])
	const total = instances * workers * each
	if u.Requests != total || u.Limit != total/2 {
		t.Errorf("Usage() = %+v, want %d requests, limit %d", u, total, total/2)
	}
	if u.Retries != allowed+held || u.Retries > u.Limit {
		t.Errorf("retries in Redis: got %d, want %d allowed + %d held, at most the limit %d", u.Retries, allowed, held, u.Limit)
	}
}

func TestRetryBudgetOnRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	defer c.Close()
	b, err := store.NewRetryBudget(c, "dep", store.BudgetOptions{Prefix: "cluster", Ratio: 0.5, Floor: store.NoFloor, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	requests(b, 10)
	if got := allowAll(t, b, 100); got != 5 {
		t.Errorf("retries allowed on a cluster: got %d, want 5", got)
	}
	if s := b.Stats(); s.Err != nil || s.LocalRetries != 0 {
		t.Errorf("Stats() = %+v, want no error, nothing decided locally", s)
	}
}

// TestRetryBudgetBoundsAFleetRetryStorm is the budget's definition of done:
// 20 instances, each with its own client and budget, run retry loops against
// a dependency that fails every call. The fleet's retries stay within
// Ratio × requests + Floor × window seconds, and use nearly all of it.
func TestRetryBudgetBoundsAFleetRetryStorm(t *testing.T) {
	srv := redistest.Start(t)
	const (
		instances = 20
		workers   = 4   // retry loops per instance
		each      = 250 // operations per loop
		ratio     = 0.1
		floor     = 2 // retries per second
		window    = 30 * time.Second
		buckets   = 10
	)
	// A generous timeout: this test is about the budget, not about a slow Redis.
	opts := store.BudgetOptions{Prefix: "storm", Ratio: ratio, Floor: floor, Window: window, Buckets: buckets, Timeout: 5 * time.Second}
	budgets := make([]*store.RetryBudget, instances)
	for i := range budgets {
		b, err := store.NewRetryBudget(srv.Client(t), "dep", opts)
		if err != nil {
			t.Fatal(err)
		}
		budgets[i] = b
	}
	var calls atomic.Int64
	dependency := func(context.Context) (struct{}, error) {
		calls.Add(1)
		return struct{}{}, errDown
	}
	var exhausted, byBudget atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for _, b := range budgets {
		p := retry.Policy{MaxAttempts: 4, BaseDelay: 20 * time.Microsecond, MaxDelay: time.Millisecond, Budget: b}
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					_, err := retry.Do(context.Background(), p, dependency)
					switch {
					case errors.Is(err, retry.ErrBudget):
						byBudget.Add(1)
					case errors.Is(err, retry.ErrExhausted):
						exhausted.Add(1)
					default:
						t.Errorf("Do: got %v, want an error matching ErrExhausted", err)
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)

	var allowed, claimsAndFlushes uint64
	for _, b := range budgets {
		s := b.Stats()
		allowed += s.Retries
		claimsAndFlushes += s.Calls
		if s.LocalRetries != 0 || s.Err != nil {
			t.Errorf("an instance decided locally: %+v", s)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	reader, err := store.NewRetryBudget(srv.Client(t), "dep", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	u := usage(t, reader)

	const requests = instances * workers * each
	limit := int64(ratio*requests + floor*window.Seconds())
	retries := calls.Load() - requests
	t.Logf("%d instances, %d operations, %v: %d retries made, %d retries counted in Redis, limit %d (%.1f%% used); "+
		"%d Redis calls (%.3f per operation); %d operations stopped by the budget, %d by MaxAttempts",
		instances, requests, elapsed.Round(time.Millisecond), retries, u.Retries, limit,
		100*float64(retries)/float64(limit), claimsAndFlushes, float64(claimsAndFlushes)/requests,
		byBudget.Load(), exhausted.Load())

	// Nothing may have left the window, or the limit would have grown.
	if max := window - window/buckets; elapsed >= max {
		t.Fatalf("the storm took %v; it must end within %v for the window to hold all of it", elapsed, max)
	}
	if u.Requests != requests || u.Limit != limit {
		t.Errorf("Redis counted %d requests and a limit of %d, want %d and %d", u.Requests, u.Limit, requests, limit)
	}
	if uint64(retries) != allowed {
		t.Errorf("retries made: got %d, want the %d the budgets allowed", retries, allowed)
	}
	if retries > u.Retries || u.Retries > limit {
		t.Errorf("got %d retries made and %d counted in Redis, want made <= counted <= limit %d", retries, u.Retries, limit)
	}
	if low := int64(math.Ceil(0.95 * float64(limit))); retries < low {
		t.Errorf("retries made: got %d, want at least %d (95%% of the limit %d): the budget is not used", retries, low, limit)
	}
	if claimsAndFlushes >= requests/4 {
		t.Errorf("got %d Redis calls for %d operations, want far fewer than one per operation", claimsAndFlushes, requests)
	}
}

func ExampleRetryBudget() {
	m, err := miniredis.Run() // stands in for the fleet's Redis
	if err != nil {
		panic(err)
	}
	defer m.Close()
	m.SetTime(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) // Redis's clock stands still
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()

	// Fleet-wide, retries may be 10% of requests (and no floor, for the example).
	budget, err := store.NewRetryBudget(rdb, "inventory", store.BudgetOptions{Ratio: 0.1, Floor: store.NoFloor})
	if err != nil {
		panic(err)
	}
	defer budget.Close()
	p := retry.Policy{MaxAttempts: 3, BaseDelay: time.Microsecond, Budget: budget}
	ctx := context.Background()

	// 100 calls succeed: no retries, and no Redis round trips.
	for i := 0; i < 100; i++ {
		_, _ = retry.Do(ctx, p, func(context.Context) (string, error) { return "ok", nil })
	}
	fmt.Println("Redis calls:", budget.Stats().Calls)

	// Then the dependency fails every call: 10 failing calls would retry
	// 20 times, but the budget allows 10% of the requests.
	attempts, stopped := 0, 0
	for i := 0; i < 10; i++ {
		_, err := retry.Do(ctx, p, func(context.Context) (string, error) {
			attempts++
			return "", errDown
		})
		if errors.Is(err, retry.ErrBudget) {
			stopped++
		}
	}
	fmt.Printf("attempts: %d, stopped by the budget: %d\n", attempts, stopped)

	u, err := budget.Usage(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Printf("fleet window: %d requests, %d retries, limit %d\n", u.Requests, u.Retries, u.Limit)
	// Output:
	// Redis calls: 0
	// attempts: 20, stopped by the budget: 5
	// fleet window: 110 requests, 10 retries, limit 11
}

func TestStoreRetryBudget(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1})
	defer c.Close()
	st, err := store.New(c, store.Options{Prefix: "checkout", Timeout: 100 * time.Millisecond, Cooldown: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b, err := st.RetryBudget("payments", store.BudgetOptions{Ratio: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if want := "{checkout:retry:payments}:v1:win"; b.Key() != want {
		t.Errorf("key: got %q, want %q (the store's prefix)", b.Key(), want)
	}
	other, err := st.RetryBudget("payments", store.BudgetOptions{Prefix: "elsewhere"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if want := "{elsewhere:retry:payments}:v1:win"; other.Key() != want {
		t.Errorf("key with its own prefix: got %q, want %q", other.Key(), want)
	}
	if _, err := st.RetryBudget("bad{name}", store.BudgetOptions{}); err == nil {
		t.Error("a bad name: got no error, want one")
	}

	// The store's cooldown: after Redis failed, the budget fails fast (and
	// decides locally) for the store's 3s instead of the budget's default 1s.
	clock := fakeclock.New(time.Now())
	cb, err := st.RetryBudget("cooldown", store.BudgetOptions{Clock: clock, Batch: 1, Ratio: 1, Floor: store.NoFloor})
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	ctx := context.Background()
	retryOnce := func(step string, wantCalls ...uint64) uint64 {
		t.Helper()
		for i := 0; i < 5; i++ {
			cb.OnRequest()
		}
		cb.AllowRetry(ctx)
		got := cb.Stats().Calls
		for _, w := range wantCalls {
			if got == w {
				return got
			}
		}
		t.Errorf("%s: Redis calls answered: got %d, want one of %v", step, got, wantCalls)
		return got
	}
	retryOnce("Redis up", 1)
	m.Close()
	retryOnce("Redis down", 1)
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Second)
	// Within the store's cooldown the budget decides locally, unless the
	// store's background probe has already found Redis answering again,
	// which ends the cooldown early.
	n := retryOnce("2s later, within the store's cooldown", 1, 2)
	clock.Advance(1500 * time.Millisecond)
	// After it the budget asks Redis again: one call, or two when the
	// requests it held during the cooldown go in a call of their own.
	retryOnce("3.5s later, after it", n+1, n+2)
}
