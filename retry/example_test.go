package retry_test

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/breakwater-go/breakwater/retry"
)

func ExampleDo() {
	calls := 0
	fetch := func(ctx context.Context) (string, error) {
		calls++
		if calls < 3 {
			return "", fmt.Errorf("dial tcp 10.0.0.7:443: %w", syscall.ECONNREFUSED)
		}
		return "42 items", nil
	}

	p := retry.Policy{
		Name:        "GET /items",
		MaxAttempts: 4,
		BaseDelay:   time.Millisecond,
		Jitter:      retry.JitterNone, // predictable waits for this example
		OnEvent: func(ev retry.Event) {
			if ev.Err != nil {
				fmt.Printf("attempt %d/%d failed (%v), retry in %v: %v\n",
					ev.Attempt, ev.MaxAttempts, ev.Kind, ev.Backoff, ev.WillRetry)
			}
		},
	}
	body, err := retry.Do(context.Background(), p, fetch)
	fmt.Println(body, err)
	// Output:
	// attempt 1/4 failed (connection), retry in 1ms: true
	// attempt 2/4 failed (connection), retry in 2ms: true
	// 42 items <nil>
}

// errCircuitOpen stands for a breaker's sentinel error.
var errCircuitOpen = errors.New("breaker: circuit open")

// openBreaker is a Gate that refuses, as an open circuit breaker does.
type openBreaker struct{}

func (openBreaker) Check(context.Context) error { return probeError{} }

type probeError struct{}

func (probeError) Error() string             { return "breaker: circuit open" }
func (probeError) Unwrap() error             { return errCircuitOpen }
func (probeError) RetryAfter() time.Duration { return 2500 * time.Millisecond }

func ExampleDo_gate() {
	calls := 0
	_, err := retry.Do(context.Background(), retry.Policy{Name: "GET /items", Gate: openBreaker{}},
		func(ctx context.Context) (string, error) {
			calls++
			return "", nil
		})
	fmt.Println("attempts:", calls)
	fmt.Println(err)
	fmt.Println(errors.Is(err, retry.ErrExhausted), errors.Is(err, errCircuitOpen))
	// Output:
	// attempts: 0
	// retry: GET /items: gate refused attempt 1 (next attempt possible in 2.5s): breaker: circuit open
	// true true
}

func ExampleParseRetryAfter() {
	now := time.Date(2015, 10, 21, 7, 28, 0, 0, time.UTC)
	for _, v := range []string{"120", "Wed, 21 Oct 2015 07:29:30 GMT", "soon"} {
		d, ok := retry.ParseRetryAfter(v, now)
		fmt.Println(d, ok)
	}
	// Output:
	// 2m0s true
	// 1m30s true
	// 0s false
}

func ExamplePolicy_Validate() {
	err := retry.Policy{Multiplier: 0.5}.Validate()
	fmt.Println(err)
	fmt.Println(errors.Is(err, retry.ErrInvalidPolicy))
	// Output:
	// retry: invalid policy: Multiplier 0.5: must be a finite number of at least 1
	// true
}
