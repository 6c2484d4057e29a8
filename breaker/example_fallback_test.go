package breaker_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/store"
)

func ExampleBreaker_Decider() {
	mr, _ := miniredis.Run()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	defer client.Close()
	st, _ := store.New(client, store.Options{})
	defer st.Close()
	b, _ := breaker.New("payments", st, breaker.Settings{ConsecutiveFailures: 2, Reporting: breaker.ReportSync})
	defer b.Close()
	events := make(chan breaker.Event, 8)
	b.Listen(func(e breaker.Event) { events <- e })

	ctx := context.Background()
	charge := func(context.Context) (string, error) { return "", errors.New("503 from payments") }
	_, _ = breaker.Execute(ctx, b, func(context.Context) (string, error) { return "ok", nil })
	fmt.Println(b.Decider(), b.State())

	mr.Close() // Redis goes away: the local breaker (FallbackLocal) decides
	for i := 1; i <= 3; i++ {
		_, err := breaker.Execute(ctx, b, charge)
		fmt.Printf("call %d: %v\n", i, err)
	}
	fmt.Println(b.Decider(), b.State())
	for i := 0; i < 2; i++ {
		e := <-events
		fmt.Printf("event: %s %s -> %s (decider %s)\n", e.Kind, e.From, e.To, e.Decider)
	}
	// Output:
	// shared closed
	// call 1: 503 from payments
	// call 2: 503 from payments
	// call 3: breaker "payments": circuit open (decided locally: store unreachable)
	// local open
	// event: store-unavailable closed -> closed (decider local)
	// event: state-changed closed -> open (decider local)
}
