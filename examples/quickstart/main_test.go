package main

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
