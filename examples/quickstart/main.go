// Quickstart puts one function behind a Breakwater breaker whose state lives
// in Redis (an embedded miniredis here): after three failures on one
// instance of the service, another instance hears that the breaker opened
// and rejects the call too.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/store"
)

func main() {
	redisServer, err := miniredis.Run() // embedded Redis; use your own in production
	if err != nil {
		log.Fatal(err)
	}
	defer redisServer.Close()
	podA, podB := newPod(redisServer.Addr(), "pod-a"), newPod(redisServer.Addr(), "pod-b")
	defer podA.Close()
	defer podB.Close()

	heard := make(chan breaker.Event, 8)
	podB.breaker.Listen(func(e breaker.Event) { heard <- e }) // every transition, whichever pod caused it

	charge := func(ctx context.Context) (string, error) {
		return "", errors.New("payments: HTTP 503") // the dependency is down
	}
	call := func(n int, p *pod) {
		_, err := breaker.Execute(context.Background(), p.breaker, charge)
		var open *breaker.OpenError
		if errors.As(err, &open) {
			err = fmt.Errorf("rejected without calling, next probe in %v", open.NextProbeIn.Round(time.Second))
		}
		fmt.Printf("call %d on %s: %v\n", n, p.breaker.Instance(), err)
	}
	for n := 1; n <= 4; n++ {
		call(n, podA)
	}
	e := <-heard
	fmt.Printf("pod-b heard: %s -> %s after %d failures\n", e.From, e.To, e.Counts.PreviousFailures)
	call(5, podB)
}

// pod is one instance of the service: its own Redis client, store and
// breaker. Instances using the same store prefix and breaker name share one breaker.
type pod struct {
	client  *redis.Client
	store   *store.Store
	breaker *breaker.Breaker
}

func newPod(addr, instance string) *pod {
	client := redis.NewClient(&redis.Options{Addr: addr})
	st, err := store.New(client, store.Options{Prefix: "quickstart"})
	if err != nil {
		log.Fatal(err)
	}
	br, err := breaker.New("payments", st, breaker.Settings{
		ConsecutiveFailures: 3, OpenDuration: 30 * time.Second, Instance: instance,
	})
	if err != nil {
		log.Fatal(err)
	}
	return &pod{client: client, store: st, breaker: br}
}

// Close closes the breaker, then the store, then the Redis client.
func (p *pod) Close() {
	p.breaker.Close()
	p.store.Close()
	p.client.Close()
}
