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
	podA, podB := newBreaker(redisServer.Addr(), "pod-a"), newBreaker(redisServer.Addr(), "pod-b")
	defer podA.Close()
	defer podB.Close()

	heard := make(chan breaker.Event, 8)
	podB.Listen(func(e breaker.Event) { heard <- e }) // every transition, whichever pod caused it

	charge := func(ctx context.Context) (string, error) {
		return "", errors.New("payments: HTTP 503") // the dependency is down
	}
	call := func(n int, pod *breaker.Breaker) {
		_, err := breaker.Execute(context.Background(), pod, charge)
		var open *breaker.OpenError
		if errors.As(err, &open) {
			err = fmt.Errorf("rejected without calling, next probe in %v", open.NextProbeIn.Round(time.Second))
		}
		fmt.Printf("call %d on %s: %v\n", n, pod.Instance(), err)
	}
	for n := 1; n <= 4; n++ {
		call(n, podA)
	}
	e := <-heard
	fmt.Printf("pod-b heard: %s -> %s after %d failures\n", e.From, e.To, e.Counts.PreviousFailures)
	call(5, podB)
}

// newBreaker is one instance of the service: its own Redis client, store and
// breaker. Instances using the same store prefix and breaker name share one breaker.
func newBreaker(addr, instance string) *breaker.Breaker {
	st, err := store.New(redis.NewClient(&redis.Options{Addr: addr}), store.Options{Prefix: "quickstart"})
	if err != nil {
		log.Fatal(err)
	}
	br, err := breaker.New("payments", st, breaker.Settings{
		ConsecutiveFailures: 3, OpenDuration: 30 * time.Second, Instance: instance,
	})
	if err != nil {
		log.Fatal(err)
	}
	return br
}
