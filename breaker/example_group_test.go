package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
)

// A breaker per tenant, made on demand: one tenant's failing backend opens
// its own breaker only. The "enterprise" tenant gets a more patient one.
func ExampleGroup() {
	st, stop := exampleStore() // a store.Store on an embedded Redis
	defer stop()

	tenants, err := breaker.NewGroup(st, breaker.GroupOptions{
		Settings: breaker.Settings{ConsecutiveFailures: 2, OpenDuration: 30 * time.Second},
		SettingsFor: func(tenant string, shared breaker.Settings) breaker.Settings {
			if tenant == "tenant:enterprise" {
				shared.ConsecutiveFailures = 5
			}
			return shared
		},
		MaxBreakers: 10000,            // at most this many breakers in memory
		IdleTimeout: 10 * time.Minute, // close the breakers of quiet tenants
	})
	if err != nil {
		panic(err)
	}
	defer tenants.Close()

	report := func(ctx context.Context) (string, error) { return "", errors.New("shard down") }
	for _, tenant := range []string{"tenant:acme", "tenant:enterprise"} {
		for i := 0; i < 3; i++ {
			_, err := breaker.ExecuteIn(context.Background(), tenants, tenant, report)
			fmt.Printf("%s call %d: %v\n", tenant, i+1, errors.Is(err, breaker.ErrOpen))
		}
	}
	fmt.Println("breakers in memory:", tenants.Len())
	// Output:
	// tenant:acme call 1: false
	// tenant:acme call 2: false
	// tenant:acme call 3: true
	// tenant:enterprise call 1: false
	// tenant:enterprise call 2: false
	// tenant:enterprise call 3: false
	// breakers in memory: 2
}

// Hold keeps a breaker for the length of a call made in two steps; the group
// never closes a held breaker.
func ExampleGroup_Hold() {
	st, stop := exampleStore()
	defer stop()
	routes, _ := breaker.NewGroup(st, breaker.GroupOptions{})
	defer routes.Close()

	ctx := context.Background()
	b, release, err := routes.Hold("GET /search")
	if err != nil {
		panic(err)
	}
	defer release()
	p, err := b.Allow(ctx)
	if err != nil {
		fmt.Println("rejected:", err)
		return
	}
	// ... make the call ...
	p.Done(ctx, nil)
	fmt.Println(b.Name(), b.State())
	// Output:
	// GET /search closed
}
