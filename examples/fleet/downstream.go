package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// probeHeader marks a request that its sender made under a half-open probe
// lease: the sender's breaker was half-open when the request left, and a
// half-open breaker admits nothing but probes. Its value names the breaker
// (its store prefix).
const probeHeader = "X-Fleet-Probe"

// downstream is the service the fleet depends on: a local HTTP server on
// 127.0.0.1 that fails while an outage lasts. It counts, exactly, every
// request that reaches it.
type downstream struct {
	srv  *httptest.Server
	host string

	failing      atomic.Bool
	failed       atomic.Int64 // requests answered with a 5xx during the outage
	failedProbes atomic.Int64 // of those, the ones carrying probeHeader
	served       atomic.Int64 // requests answered 200
	probes       atomic.Int64 // requests carrying probeHeader

	mu       sync.Mutex
	from     time.Time        // when the outage began
	until    time.Time        // when it ended
	probedBy map[string]int64 // failed probes by breaker
	// Set by recoverAfter: the outage ends once each of breakers breakers
	// has sent probes probes into it; over is closed then.
	breakers int
	want     int64
	over     chan struct{}
}

func newDownstream() *downstream {
	d := &downstream{probedBy: map[string]int64{}}
	d.srv = httptest.NewServer(http.HandlerFunc(d.serve))
	u, _ := url.Parse(d.srv.URL) // httptest's URL always parses
	d.host = u.Host
	return d
}

func (d *downstream) serve(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	probe := r.Header.Get(probeHeader)
	if probe != "" {
		d.probes.Add(1)
	}
	if d.failing.Load() {
		if probe != "" {
			d.failedProbes.Add(1)
			d.probed(probe)
		}
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

// probed counts a probe of breaker id into the outage, and ends the outage
// when that was the last one recoverAfter waits for: the request that
// completes the count is the last one to fail.
func (d *downstream) probed(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.probedBy[id]++
	d.maybeRecoverLocked()
}

// fail starts the outage.
func (d *downstream) fail() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.from = time.Now()
	d.failing.Store(true)
}

// recoverAfter ends the outage once each of breakers breakers has sent
// probes probes into it; at once when probes is 0. The channel is closed
// when the outage is over.
func (d *downstream) recoverAfter(breakers int, probes int64) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.breakers, d.want, d.over = breakers, probes, make(chan struct{})
	d.maybeRecoverLocked()
	return d.over
}

func (d *downstream) maybeRecoverLocked() {
	if d.over == nil || !d.failing.Load() {
		return
	}
	if d.want > 0 {
		if len(d.probedBy) < d.breakers {
			return
		}
		for _, n := range d.probedBy {
			if n < d.want {
				return
			}
		}
	}
	d.failing.Store(false)
	d.until = time.Now()
	close(d.over)
}

// outage returns when the last outage began and ended.
func (d *downstream) outage() (from, until time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.from, d.until
}

// reset clears the counters and ends any outage, between two runs.
func (d *downstream) reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failing.Store(false)
	d.failed.Store(0)
	d.failedProbes.Store(0)
	d.served.Store(0)
	d.probes.Store(0)
	d.from, d.until = time.Time{}, time.Time{}
	d.probedBy = map[string]int64{}
	d.breakers, d.want, d.over = 0, 0, nil
}

func (d *downstream) close() { d.srv.Close() }
