package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
)

// probeHeader marks a request that its sender made under a half-open probe
// lease: the sender's breaker was half-open when the request left, and a
// half-open breaker admits nothing but probes.
const probeHeader = "X-Fleet-Probe"

// downstream is the service the fleet depends on: a local HTTP server on
// 127.0.0.1 that fails while an outage lasts. It counts, exactly, every
// request that reaches it.
type downstream struct {
	srv  *httptest.Server
	host string

	failing atomic.Bool
	failed  atomic.Int64 // requests answered with a 5xx during the outage
	served  atomic.Int64 // requests answered 200
	probes  atomic.Int64 // requests carrying probeHeader
}

func newDownstream() *downstream {
	d := &downstream{}
	d.srv = httptest.NewServer(http.HandlerFunc(d.serve))
	u, _ := url.Parse(d.srv.URL) // httptest's URL always parses
	d.host = u.Host
	return d
}

func (d *downstream) serve(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	if r.Header.Get(probeHeader) == "1" {
		d.probes.Add(1)
	}
	if d.failing.Load() {
		// Alternate the two statuses an overloaded or restarting service gives.
		code := http.StatusServiceUnavailable
		if d.failed.Add(1)%2 == 0 {
			code = http.StatusInternalServerError
		}
		http.Error(w, http.StatusText(code), code)
		return
	}
	d.served.Add(1)
	_, _ = io.WriteString(w, "ok\n")
}

// reset clears the counters and ends any outage, between two runs.
func (d *downstream) reset() {
	d.failing.Store(false)
	d.failed.Store(0)
	d.served.Store(0)
	d.probes.Store(0)
}

func (d *downstream) close() { d.srv.Close() }
