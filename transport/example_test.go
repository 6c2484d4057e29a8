package transport_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/retry"
	"github.com/breakwater-go/breakwater/store"
	"github.com/breakwater-go/breakwater/transport"
)

func Example() {
	// Redis keeps the breakers; miniredis stands in for it here.
	m, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer m.Close()
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	st, err := store.New(rdb, store.Options{Prefix: "example"})
	if err != nil {
		panic(err)
	}
	defer st.Close()

	// A dependency that is overloaded twice, then answers.
	var calls atomic.Int32
	inventory := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "42 items")
	}))
	defer inventory.Close()

	tr, err := transport.New(transport.Options{
		Store:    st,
		Settings: breaker.Settings{ConsecutiveFailures: 5, OpenDuration: 30 * time.Second},
		Retry: retry.Policy{
			MaxAttempts: 3,
			BaseDelay:   time.Millisecond,
			OnEvent: func(ev retry.Event) {
				switch {
				case ev.GateRefused:
					fmt.Printf("attempt %d not made: %v\n", ev.Attempt, ev.Err)
				case ev.Err != nil:
					fmt.Printf("attempt %d: %v (retry: %v)\n", ev.Attempt, ev.Err, ev.WillRetry)
				default:
					fmt.Printf("attempt %d: ok\n", ev.Attempt)
				}
			},
		},
		// One breaker for the service, whatever host serves it.
		BreakerName: func(*http.Request) string { return "inventory" },
	})
	if err != nil {
		panic(err)
	}
	defer tr.Close()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}

	resp, err := client.Get(inventory.URL + "/items")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))

	// An operator opens the breaker for the whole fleet: requests fail at
	// once, without reaching the dependency.
	br, err := tr.Breaker("inventory")
	if err != nil {
		panic(err)
	}
	if err := br.ForceOpen(context.Background()); err != nil {
		panic(err)
	}
	_, err = client.Get(inventory.URL + "/items")
	fmt.Println(errors.Is(err, breaker.ErrOpen), calls.Load())
	// Output:
	// attempt 1: retry: HTTP 503 Service Unavailable (retry: true)
	// attempt 2: retry: HTTP 503 Service Unavailable (retry: true)
	// attempt 3: ok
	// 200 42 items
	// attempt 1 not made: breaker "inventory": circuit forced open
	// true 3
}
