package breaker_test

import (
	"context"
	"reflect"
	"sync"
	"testing"

	"github.com/breakwater-go/breakwater/breaker"
)

// TestListenersHearInOrderUntilStopped: every event goes to the listeners
// in the order they were registered; a stopped listener hears no more, the
// others go on, and stopping twice is harmless.
func TestListenersHearInOrderUntilStopped(t *testing.T) {
	e := newMini(t)
	b := e.instance("listen", breaker.Settings{ConsecutiveFailures: 1})
	ctx := context.Background()
	var mu sync.Mutex
	var heard []string
	listen := func(name string) func() {
		return b.Listen(func(ev breaker.Event) {
			if ev.Kind == breaker.StateChanged {
				mu.Lock()
				heard = append(heard, name+":"+ev.To.String())
				mu.Unlock()
			}
		})
	}
	listen("a")
	stopB := listen("b")
	listen("c")
	done := events(b) // registered last: says when the others have heard
	if err := b.ForceOpen(ctx); err != nil {
		t.Fatal(err)
	}
	next(t, done, breaker.StateChanged)
	stopB()
	stopB()
	if err := b.ForceClose(ctx); err != nil {
		t.Fatal(err)
	}
	next(t, done, breaker.StateChanged)
	mu.Lock()
	defer mu.Unlock()
	want := []string{"a:forced-open", "b:forced-open", "c:forced-open", "a:closed", "c:closed"}
	if !reflect.DeepEqual(heard, want) {
		t.Fatalf("heard %v, want %v", heard, want)
	}
}
