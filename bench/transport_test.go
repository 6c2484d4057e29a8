package bench

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/breakwater-go/breakwater/store"
	"github.com/breakwater-go/breakwater/transport"
)

// BenchmarkTransport measures one HTTP GET of a two-byte body from a server
// in the same process, serially: through a bare *http.Transport (http),
// and through transport.New over the same kind of transport (breakwater: a
// closed per-host breaker with batched reports, the default retry policy,
// no retry needed), with its store on the benchmarks' redis-server. The
// difference is what the transport adds to a request that succeeds.
func BenchmarkTransport(b *testing.B) {
	srv := startRedis(b)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	b.Cleanup(web.Close)
	get := func(b *testing.B, c *http.Client) {
		resp, err := c.Get(web.URL)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	run := func(b *testing.B, rt http.RoundTripper) {
		c := &http.Client{Transport: rt}
		for i := 0; i < warmup; i++ {
			get(b, c)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			get(b, c)
		}
	}
	b.Run("http", func(b *testing.B) {
		base := &http.Transport{}
		b.Cleanup(base.CloseIdleConnections)
		run(b, base)
	})
	b.Run("breakwater", func(b *testing.B) {
		e := newEnv(b, srv)
		st, err := store.New(e.client(true), store.Options{Prefix: e.prefix, Timeout: storeTimeout})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Close() })
		base := &http.Transport{}
		b.Cleanup(base.CloseIdleConnections)
		t, err := transport.New(transport.Options{Store: st, Base: base})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = t.Close() })
		run(b, t)
	})
}
