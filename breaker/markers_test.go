package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/alicebob/miniredis/v2"
	circuitbreaker "github.com/mercari/go-circuitbreaker"
	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/store"
)

func TestMarkers(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		wantSuccess uint64
		wantFailure uint64
	}{
		{"plain error", errBoom, 0, 1},
		{"Ignore", breaker.Ignore(errBoom), 0, 0},
		{"MarkSuccess", breaker.MarkSuccess(errBoom), 1, 0},
		{"Ignore, wrapped", fmt.Errorf("fetch: %w", breaker.Ignore(errBoom)), 0, 0},
		{"MarkSuccess, joined", errors.Join(errors.New("other"), breaker.MarkSuccess(errBoom)), 1, 0},
		{"outermost mark counts", breaker.Ignore(breaker.MarkSuccess(errBoom)), 0, 0},
		{"outermost mark counts, other way", breaker.MarkSuccess(breaker.Ignore(errBoom)), 1, 0},
		{"go-circuitbreaker Ignore", circuitbreaker.Ignore(errBoom), 0, 0},
		{"go-circuitbreaker MarkAsSuccess", circuitbreaker.MarkAsSuccess(errBoom), 1, 0},
		{"ours outside go-circuitbreaker's", breaker.MarkSuccess(circuitbreaker.Ignore(errBoom)), 1, 0},
		{"go-circuitbreaker's outside ours", circuitbreaker.Ignore(breaker.MarkSuccess(errBoom)), 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newMini(t)
			classified := 0
			b := e.instance("marked", breaker.Settings{Classify: func(ctx context.Context, err error) breaker.Outcome {
				classified++
				return breaker.DefaultClassify(ctx, err)
			}})
			if got := call(b, tt.err); got != tt.err {
				t.Errorf("Execute returned %v, want the error fn returned", got)
			}
			c := snapshot(t, b).Counts
			if c.Successes != tt.wantSuccess || c.Failures != tt.wantFailure {
				t.Errorf("counts: got %d successes and %d failures, want %d and %d",
					c.Successes, c.Failures, tt.wantSuccess, tt.wantFailure)
			}
			wantClassified := 0
			if tt.wantFailure > 0 {
				wantClassified = 1
			}
			if classified != wantClassified {
				t.Errorf("Classify asked %d times, want %d (never for a marked error)", classified, wantClassified)
			}
		})
	}
}

func TestMarkersWrap(t *testing.T) {
	for _, mark := range []func(error) error{breaker.Ignore, breaker.MarkSuccess} {
		if mark(nil) != nil {
			t.Error("mark(nil): got non-nil, want nil")
		}
		err := mark(errBoom)
		if !errors.Is(err, errBoom) || err.Error() != errBoom.Error() {
			t.Errorf("mark(errBoom) = %q: want an error that wraps errBoom with its message", err)
		}
	}
}

func TestExecuteWithFallback(t *testing.T) {
	e := newMini(t)
	b := e.instance("fb", breaker.Settings{ConsecutiveFailures: 1})
	ctx := context.Background()
	fallbacks := 0
	fallback := func(_ context.Context, rejected error) (string, error) {
		fallbacks++
		var open *breaker.OpenError
		if !errors.As(rejected, &open) {
			t.Errorf("fallback got %v, want an *OpenError", rejected)
		}
		return "cached", nil
	}
	fail := func(context.Context) (string, error) { return "", errBoom }
	ok := func(context.Context) (string, error) { return "fresh", nil }

	// fn's own failure is returned as it is.
	if v, err := breaker.ExecuteWithFallback(ctx, b, fail, fallback); err != errBoom || v != "" || fallbacks != 0 {
		t.Errorf("failing call: got %q, %v and %d fallbacks; want \"\", errBoom and none", v, err, fallbacks)
	}
	// The breaker is open now: the fallback answers, fn does not run.
	ran := false
	v, err := breaker.ExecuteWithFallback(ctx, b, func(ctx context.Context) (string, error) {
		ran = true
		return ok(ctx)
	}, fallback)
	if err != nil || v != "cached" || ran || fallbacks != 1 {
		t.Errorf("rejected call: got %q, %v, ran %v, %d fallbacks; want \"cached\", nil, false, 1", v, err, ran, fallbacks)
	}
	// fn that returns another breaker's rejection is not a rejection of b.
	if err := b.ForceClose(ctx); err != nil {
		t.Fatal(err)
	}
	other := &breaker.OpenError{Name: "other"}
	if _, err := breaker.ExecuteWithFallback(ctx, b, func(context.Context) (string, error) { return "", other }, fallback); err != other || fallbacks != 1 {
		t.Errorf("fn returning ErrOpen: got %v and %d fallbacks, want fn's error and no fallback", err, fallbacks)
	}
	// A nil fallback: the rejection is returned.
	if err := b.ForceOpen(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := breaker.ExecuteWithFallback(ctx, b, ok, nil); !errors.Is(err, breaker.ErrOpen) {
		t.Errorf("nil fallback: got %v, want ErrOpen", err)
	}
}

func ExampleExecuteWithFallback() {
	st, stop := exampleStore()
	defer stop()
	b, _ := breaker.New("prices", st, breaker.Settings{})
	defer b.Close()
	_ = b.ForceOpen(context.Background()) // the prices service is being repaired

	price, err := breaker.ExecuteWithFallback(context.Background(), b,
		func(ctx context.Context) (string, error) { return "9.90 (live)", nil },
		func(ctx context.Context, rejected error) (string, error) {
			return "9.50 (cached)", nil // the last price seen
		})
	fmt.Println(price, err)
	// Output:
	// 9.50 (cached) <nil>
}

func ExampleIgnore() {
	st, stop := exampleStore()
	defer stop()
	b, _ := breaker.New("users", st, breaker.Settings{ConsecutiveFailures: 1})
	defer b.Close()

	errBadRequest := errors.New("users: HTTP 400")
	_, err := breaker.Execute(context.Background(), b, func(ctx context.Context) (int, error) {
		// The caller sent a bad request: that says nothing about the
		// users service, so the breaker does not count it.
		return 0, breaker.Ignore(errBadRequest)
	})
	fmt.Println(err, errors.Is(err, errBadRequest), b.State())
	// Output:
	// users: HTTP 400 true closed
}

// exampleStore returns a store on an embedded Redis (miniredis) and a
// function that closes both.
func exampleStore() (*store.Store, func()) {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	st, err := store.New(client, store.Options{Prefix: "example"})
	if err != nil {
		panic(err)
	}
	return st, func() {
		st.Close()
		client.Close()
		mr.Close()
	}
}
