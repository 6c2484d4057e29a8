package bench

import (
	"context"
	"math"
	"testing"
)

// TestCommandsPerCall checks what BenchmarkBreakers reports as cmds/op:
// how many Redis commands each breaker sends per call, after warm-up.
func TestCommandsPerCall(t *testing.T) {
	srv := startRedis(t)
	const calls = 200
	for _, c := range cases {
		c := c
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, srv)
			do := c.setup(e)
			ctx := context.Background()
			for i := 0; i < warmup; i++ {
				if err := do(ctx); err != nil {
					t.Fatalf("warm-up call %d: %v", i+1, err)
				}
			}
			e.cmds.n.Store(0)
			for i := 0; i < calls; i++ {
				if err := do(ctx); err != nil {
					t.Fatalf("call %d: %v", i+1, err)
				}
			}
			// A re-read of the shared state in the background (after the
			// subscription starts) may land among the calls: allow a few.
			got := float64(e.cmds.n.Load()) / calls
			if math.Abs(got-c.cmds) > 0.025 {
				t.Errorf("got %.3f Redis commands per call, want %v", got, c.cmds)
			}
		})
	}
}
