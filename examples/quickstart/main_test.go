package main

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// Example runs the quick start; its output is what README shows.
func Example() {
	main()
	// Output:
	// call 1 on pod-a: payments: HTTP 503
	// call 2 on pod-a: payments: HTTP 503
	// call 3 on pod-a: payments: HTTP 503
	// call 4 on pod-a: rejected without calling, next probe in 30s
	// pod-b heard: closed -> open after 3 failures
	// call 5 on pod-b: rejected without calling, next probe in 30s
}

// TestMainClosesWhatItOpens: the quick start closes its breakers, stores
// and clients; no goroutine of theirs outlives main.
func TestMainClosesWhatItOpens(t *testing.T) {
	before := runtime.NumGoroutine()
	stdout := os.Stdout
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	os.Stdout = devNull
	main()
	os.Stdout = stdout
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after main, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
