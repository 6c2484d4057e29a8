package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/store"
)

func ExampleExecute() {
	mr, _ := miniredis.Run() // an embedded Redis; use your own client in production
	defer mr.Close()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()

	st, _ := store.New(client, store.Options{Prefix: "checkout"})
	defer st.Close()
	b, err := breaker.New("payments-api", st, breaker.Settings{ConsecutiveFailures: 3, OpenDuration: 30 * time.Second,
		// Report each outcome before the call returns, so that the call
		// after the third failure is rejected. The default, ReportBatched,
		// reports within a few milliseconds and costs no I/O per call.
		Reporting: breaker.ReportSync})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	b.Listen(func(e breaker.Event) {
		if e.Kind == breaker.StateChanged {
			fmt.Printf("event: %s -> %s after %d failures\n", e.From, e.To, e.Counts.PreviousFailures)
		}
	})

	charge := func(ctx context.Context) (string, error) { return "", errors.New("503 from payments") }
	for i := 1; i <= 4; i++ {
		_, err := breaker.Execute(context.Background(), b, charge)
		var open *breaker.OpenError
		if errors.As(err, &open) {
			fmt.Printf("call %d: rejected, next probe in %.0fs\n", i, open.NextProbeIn.Seconds())
			continue
		}
		fmt.Printf("call %d: %v\n", i, err)
	}
	// Output:
	// call 1: 503 from payments
	// call 2: 503 from payments
	// event: closed -> open after 3 failures
	// call 3: 503 from payments
	// call 4: rejected, next probe in 30s
}

func ExampleBreaker_Allow() {
	mr, _ := miniredis.Run()
	defer mr.Close()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	st, _ := store.New(client, store.Options{})
	defer st.Close()
	b, _ := breaker.New("search", st, breaker.Settings{})
	defer b.Close()

	ctx := context.Background()
	permit, err := b.Allow(ctx) // step one: may the call run?
	if err != nil {
		fmt.Println("rejected:", err)
		return
	}
	callErr := error(nil)     // ... make the call that cannot be wrapped ...
	permit.Done(ctx, callErr) // step two: report how it ended

	_ = b.Flush(ctx) // successes are reported in batches; deliver this one now
	snap, _ := b.Snapshot(ctx)
	fmt.Println(snap.State, snap.Counts.Successes)
	// Output: closed 1
}

func ExampleBreaker_ForceOpen() {
	mr, _ := miniredis.Run()
	defer mr.Close()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	st, _ := store.New(client, store.Options{})
	defer st.Close()
	b, _ := breaker.New("llm-api", st, breaker.Settings{})
	defer b.Close()

	ctx := context.Background()
	_ = b.ForceOpen(ctx) // an operator takes the dependency out, fleet-wide
	_, err := breaker.Execute(ctx, b, func(context.Context) (int, error) { return 1, nil })
	fmt.Println(err)
	_ = b.Reset(ctx)
	fmt.Println(b.State())
	// Output:
	// breaker "llm-api": circuit forced open
	// closed
}
