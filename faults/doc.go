// Package faults holds Breakwater's fault-injection tests: a real
// redis-server behind an in-process Toxiproxy (github.com/Shopify/toxiproxy/v2)
// that adds latency, drops data, resets connections, slices and throttles
// the replies, while breakers serve steady traffic through it. It is a module
// of its own so that Toxiproxy's dependencies stay out of the library's
// go.mod. There is no code here besides the tests.
package faults
