package bench

import (
	"context"
	"testing"
)

// warmup is how many calls run before a measurement: they load the
// scripts into Redis and give every instance its view of the shared state.
const warmup = 20

// BenchmarkBreakers measures one call through each breaker of cases, all
// on the same redis-server: first on one goroutine (serial: the latency of
// a call), then on GOMAXPROCS goroutines at once (parallel: wall time per
// call under concurrency, whose inverse is the throughput of one process).
// cmds/op is the number of Redis commands the measured instance sent per
// call; a command is one network round trip here. redis-us/op is the time
// redis-server spent executing commands per call (INFO commandstats): the
// share of the one thread of Redis that a call takes, whoever sent it.
func BenchmarkBreakers(b *testing.B) {
	srv := startRedis(b)
	for _, mode := range []string{"serial", "parallel"} {
		mode := mode
		b.Run(mode, func(b *testing.B) {
			for _, c := range cases {
				c := c
				b.Run(c.name, func(b *testing.B) { measure(b, srv, c, mode == "parallel") })
			}
		})
	}
}

// measure sets c up afresh, warms it up and times b.N calls.
func measure(b *testing.B, srv *server, c benchCase, parallel bool) {
	e := newEnv(b, srv)
	do := c.setup(e)
	ctx := context.Background()
	for i := 0; i < warmup; i++ {
		if err := do(ctx); err != nil {
			b.Fatalf("warm-up call %d: %v", i+1, err)
		}
	}
	b.ReportAllocs()
	e.cmds.n.Store(0)
	busy := srv.busy(b)
	b.ResetTimer()
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := do(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
	} else {
		for i := 0; i < b.N; i++ {
			if err := do(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(e.cmds.n.Load())/float64(b.N), "cmds/op")
	b.ReportMetric(float64(srv.busy(b)-busy)/float64(b.N), "redis-us/op")
}
