module github.com/breakwater-go/breakwater/linearizability

go 1.23.0

replace github.com/breakwater-go/breakwater => ../

require (
	github.com/anishathalye/porcupine v1.3.1
	github.com/breakwater-go/breakwater v0.0.0-00010101000000-000000000000
	github.com/redis/go-redis/v9 v9.18.0
)

require (
	github.com/benbjohnson/clock v1.3.0 // indirect
	github.com/cenkalti/backoff/v3 v3.1.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/dgryski/go-rendezvous v0.0.0-20200823014737-9f7001d12a5f // indirect
	github.com/mercari/go-circuitbreaker v0.0.2 // indirect
	go.uber.org/atomic v1.11.0 // indirect
)
