package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// captureHook keeps the arguments of the last EVALSHA a client sent.
type captureHook struct {
	mu   sync.Mutex
	args []interface{}
}

func (h *captureHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *captureHook) keep(cmd redis.Cmder) {
	if cmd.Name() == "evalsha" {
		h.mu.Lock()
		h.args = append([]interface{}(nil), cmd.Args()...)
		h.mu.Unlock()
	}
}

func (h *captureHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.keep(cmd)
		return next(ctx, cmd)
	}
}

func (h *captureHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			h.keep(cmd)
		}
		return next(ctx, cmds)
	}
}

// BenchmarkScriptCost measures the Redis time of the script call a closed
// breaker's report makes in synchronous mode (the fast script,
// lua/fast.lua, with the arguments the store sends: captured from a real
// report, replayed with a new sequence number each time) beside the tiny
// HINCRBY+TIME script, call by call: each iteration makes one of each, and
// INFO commandstats before and after each attributes its time. Both are
// sent the same way, so that what is compared is the scripts: on a small
// machine shared with the client, Redis's time per call also grows with
// what the client does around the call (by half or more), which a Redis
// on its own host does not see. Reported: breakwater-us/script,
// tiny-us/script and their ratio.
func BenchmarkScriptCost(b *testing.B) {
	srv := startRedis(b)
	e := newEnv(b, srv)
	capture := &captureHook{}
	e.hook = capture
	report := breakwaterClosedSync(e)
	ctx := context.Background()
	for i := 0; i < warmup; i++ {
		if err := report(ctx); err != nil {
			b.Fatal(err)
		}
	}
	capture.mu.Lock()
	args := capture.args // evalsha sha numkeys key instance generation successes seq
	capture.mu.Unlock()
	if len(args) != 8 || fmt.Sprint(args[2]) != "1" {
		b.Fatalf("the last script call of a report: %v, want the fast script's (one key, four arguments)", args)
	}
	sha, key := args[1].(string), args[3].(string)
	seq, err := strconv.ParseInt(fmt.Sprint(args[7]), 10, 64)
	if err != nil {
		b.Fatalf("the fast script's sequence %v: %v", args[7], err)
	}
	c := e.client(false)
	tinyCall := tinyScript(e)
	if err := tinyCall(ctx); err != nil { // loads the script
		b.Fatal(err)
	}
	var ours, tiny, n float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		seq++
		c0, u0 := srv.scripts(b)
		res, err := c.EvalSha(ctx, sha, []string{key}, args[4], args[5], args[6], seq).Int64()
		if err != nil || res != 1 {
			b.Fatalf("the fast script: %v, %v; want 1 (counted)", res, err)
		}
		c1, u1 := srv.scripts(b)
		if err := tinyCall(ctx); err != nil {
			b.Fatal(err)
		}
		c2, u2 := srv.scripts(b)
		if c1-c0 != 1 || c2-c1 != 1 {
			continue // another script ran meanwhile
		}
		ours += float64(u1 - u0)
		tiny += float64(u2 - u1)
		n++
	}
	b.StopTimer()
	if n == 0 || tiny == 0 {
		b.Fatal("no iteration ran exactly one script of each")
	}
	b.ReportMetric(ours/n, "breakwater-us/script")
	b.ReportMetric(tiny/n, "tiny-us/script")
	b.ReportMetric(ours/tiny, "ratio")
}
