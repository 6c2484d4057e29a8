package bench

import (
	"context"
	"runtime"
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
	modes := []struct {
		name    string
		callers int // 0: serial; -1: GOMAXPROCS; else that many goroutines
	}{{"serial", 0}, {"parallel", -1}, {"callers-8", 8}, {"callers-64", 64}}
	for _, mode := range modes {
		mode := mode
		b.Run(mode.name, func(b *testing.B) {
			for _, c := range cases {
				c := c
				if mode.callers > 0 && !c.callers {
					continue
				}
				b.Run(c.name, func(b *testing.B) { measure(b, srv, c, mode.callers) })
			}
		})
	}
}

// measure sets c up afresh, warms it up and times b.N calls from callers
// goroutines (0: one, serially; -1: GOMAXPROCS).
func measure(b *testing.B, srv *server, c benchCase, callers int) {
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
	scriptCalls, scriptUsec := srv.scripts(b)
	b.ResetTimer()
	if callers != 0 {
		if callers > 0 {
			// RunParallel starts parallelism × GOMAXPROCS goroutines.
			b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
		}
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
	cmds := e.cmds.n.Load()
	used := srv.busy(b) - busy
	b.ReportMetric(float64(cmds)/float64(b.N), "cmds/op")
	b.ReportMetric(float64(used)/float64(b.N), "redis-us/op")
	if calls, usec := srv.scripts(b); calls > scriptCalls {
		// Redis's time per script call (EVALSHA's own usec, which holds
		// the commands the script called): what one script call costs the
		// fleet's one Redis thread.
		b.ReportMetric(float64(usec-scriptUsec)/float64(calls-scriptCalls), "redis-us/script")
	}
}
