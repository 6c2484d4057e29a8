package breakwatertest_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/breakwatertest"
)

// A test of a breaker's whole cycle, on an embedded Redis, without sleeping.
// In a test, breakwatertest.NewServer(t) (or NewStore(t)) starts the server
// and closes it at the end; Start and Close do it by hand.
func Example() {
	srv, err := breakwatertest.Start()
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	st, err := srv.Store()
	if err != nil {
		panic(err)
	}
	clock := srv.Clock() // moves Redis's clock and the breaker's together
	b, err := breaker.New("payments", st, breaker.Settings{
		ConsecutiveFailures: 2, OpenDuration: 30 * time.Second, Clock: clock,
	})
	if err != nil {
		panic(err)
	}
	defer b.Close()

	ctx := context.Background()
	fail := func(context.Context) (string, error) { return "", errors.New("payments: HTTP 503") }
	succeed := func(context.Context) (string, error) { return "paid", nil }
	for i := 0; i < 2; i++ {
		_, _ = breaker.Execute(ctx, b, fail)
	}
	_, err = breaker.Execute(ctx, b, succeed)
	fmt.Println("after 2 failures:", err)

	clock.Advance(30 * time.Second)
	v, err := breaker.Execute(ctx, b, succeed) // the probe
	fmt.Println("30s later:", v, err, b.State())
	// Output:
	// after 2 failures: breaker "payments": circuit open (next probe in 30s)
	// 30s later: paid <nil> closed
}
