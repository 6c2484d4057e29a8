package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker/backend"
	"github.com/breakwater-go/breakwater/store"
)

// TestSettleCall: when the failures of several instances make a run long
// enough to trip once it has settled, the record script asks every
// instance to report at once, "settle <generation> <name>" with its HMAC:
// the reply of the batch that made the run says so, and WatchSettle's
// function is called with the generation, once per run. A call whose HMAC
// does not verify is not passed on, nor is one for another breaker.
func TestSettleCall(t *testing.T) {
	const name = "settle"
	prefix := "settle-call"
	e := newFleetEnv(t, store.Options{Prefix: prefix, Timeout: 10 * time.Second}, fleetPolicy(time.Minute, time.Minute))
	ctx := context.Background()
	calls := make(chan int64, 16)
	defer e.st.Watch(name, func(int64, *backend.Reply) {})()
	defer e.st.WatchSettle(name, func(gen int64) { calls <- gen })()
	defer e.st.WatchSettle("another", func(gen int64) { calls <- -gen })()
	waitSubscribed(t, e.raw, prefix)
	gen := e.read(name).Generation // (the store learns the breaker's key)
	seq := int64(0)
	rec := func(instance string, b backend.Batch) backend.Reply {
		t.Helper()
		seq++
		q := e.req(name, instance)
		q.Known, q.Generation, q.Seq, q.Batch = gen, gen, time.Now().UnixMicro()+seq, b
		q.Batch.Settle = time.Hour // nothing settles: only the call can bring the run up
		r, err := e.st.Record(ctx, q)
		return e.must("Record "+instance, r, err)
	}
	one := backend.Batch{Failures: 1, Lead: 1, Trail: 1}
	// The next call passed on.
	next := func(step string) int64 {
		t.Helper()
		select {
		case g := <-calls:
			return g
		case <-time.After(fleetWait):
			t.Fatalf("%s: no call passed on within %v", step, fleetWait)
			return 0
		}
	}

	if r := rec("i1", one); r.Settling || r.State != backend.Closed {
		t.Fatalf("1 failure: %+v, want closed and no call", r)
	}
	if r := rec("i2", one); r.Settling {
		t.Fatalf("2 failures: asked the instances to report")
	}
	r := rec("i3", one)
	if !r.Settling || r.State != backend.Closed || r.Counts.ConsecutiveFailures != 3 {
		t.Fatalf("3 failures of 3 instances: %+v, want closed, 3 consecutive failures and a call", r)
	}
	if g := next("the run of 3"); g != gen {
		t.Fatalf("call for the run of 3: got generation %d, want %d", g, gen)
	}
	if r := rec("i1", one); r.Settling {
		t.Errorf("a 4th failure of the same run asked again")
	}

	// Forged calls (no HMAC, a wrong one, another breaker's name, no
	// generation), published before the next real one: none is passed on.
	forged := []string{
		fmt.Sprintf("settle %d %s", gen+7, name),
		fmt.Sprintf("settle %d %s\n%s", gen+7, name, strings.Repeat("ab", 20)),
		fmt.Sprintf("settle %d another\n%s", gen+7, strings.Repeat("0", 40)),
		fmt.Sprintf("settle x %s\n%s", name, strings.Repeat("0", 40)),
	}
	for _, m := range forged {
		if err := e.raw.Publish(ctx, e.st.Channel(), m).Err(); err != nil {
			t.Fatal(err)
		}
	}

	// A success after the run ends it; the next run that reaches the
	// threshold asks again.
	rec("i4", backend.Batch{Successes: 1})
	rec("i1", one)
	rec("i2", one)
	if r := rec("i3", one); !r.Settling {
		t.Fatalf("the second run of 3: no call (%+v)", r.Counts)
	}
	if g := next("the second run"); g != gen {
		t.Fatalf("call for the second run: got generation %d, want %d (a forged call was passed on)", g, gen)
	}
}
