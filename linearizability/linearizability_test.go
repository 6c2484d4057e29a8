package linearizability

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker/backend"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

const (
	// opsPer is how many operations each instance runs: 16 × 2000 = 32,000
	// operations, besides the second copies of the flushes sent twice.
	opsPer = 2000
	// checkTimeout bounds porcupine's check of one history.
	checkTimeout = time.Minute
	// minShort is the least number of short answers (the record script's
	// fast path) a history must hold.
	minShort = 300
	// idleExpiry is the stores' IdleExpiry: short, so that each instance
	// asks for the keys' expiry to be renewed every quarter of a second
	// (and the record script then takes its full path), long enough that
	// the keys of a breaker in use never expire.
	idleExpiry = 2 * time.Second
)

// newScripts starts a redis-server and returns the real backend on it,
// its client, and the breakers of a run: one of each policy, each shared by
// every instance, and the scenarios' breaker.
func newScripts(t *testing.T) (*scripts, *redis.Client, breakers) {
	t.Helper()
	srv := redistest.Start(t)
	client := srv.Client(t, func(o *redis.Options) {
		o.MaxRetries = -1 // one call, one script run: a retry could run it twice
		o.PoolSize = 4 * instances
		o.ContextTimeoutEnabled = true
	})
	client.AddHook(renewHook{})
	be := &scripts{settings: map[*policy]*backend.Policy{}}
	for i := 0; i < instances; i++ {
		st, err := store.New(client, store.Options{Prefix: "lin", Timeout: 10 * time.Second, IdleExpiry: idleExpiry})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		be.stores = append(be.stores, st)
	}
	var targets breakers
	for i, p := range policies {
		be.settings[p] = settings(p)
		targets.shared = append(targets.shared, target{name: fmt.Sprintf("policy-%d", i), pol: p, settings: be.settings[p]})
	}
	be.settings[scenarioPolicy] = settings(scenarioPolicy)
	targets.scenes = target{name: "scenarios", pol: scenarioPolicy, settings: be.settings[scenarioPolicy]}
	return be, client, targets
}

// TestLinearizable runs 16 instances against one redis-server and checks
// the history against the model: the scripts are atomic, and they do what
// the model says.
func TestLinearizable(t *testing.T) {
	be, _, targets := newScripts(t)
	start := time.Now()
	seed := time.Now().UnixNano()
	t.Logf("instances' seed %d (the interleaving is the machine's)", seed)
	history := workload(t, be, targets, instances, opsPer, seed)
	ran := time.Since(start)
	start = time.Now()
	res, info := porcupine.CheckOperationsVerbose(model(), history, checkTimeout)
	t.Logf("%d operations in %v, checked in %v: %s", len(history), ran.Round(time.Millisecond),
		time.Since(start).Round(time.Millisecond), res)
	if res != porcupine.Ok {
		explain(t, history, info)
		t.Fatalf("history of the real scripts: %s, want %s", res, porcupine.Ok)
	}
	cover(t, history, info)
}

// TestNonAtomicRecordIsCaught runs the same workload with a record that
// reads the state in one call and writes it back in a second: the check
// must find that history not linearizable.
func TestNonAtomicRecordIsCaught(t *testing.T) {
	be, client, targets := newScripts(t)
	broken := &nonAtomic{scripts: *be, client: client}
	seed := time.Now().UnixNano()
	t.Logf("instances' seed %d (the interleaving is the machine's)", seed)
	history := workload(t, broken, targets, instances, opsPer, seed)
	start := time.Now()
	res := porcupine.CheckOperationsTimeout(model(), history, checkTimeout)
	t.Logf("%d operations, checked in %v: %s", len(history), time.Since(start).Round(time.Millisecond), res)
	if res != porcupine.Illegal {
		t.Fatalf("history of the non-atomic record: %s, want %s", res, porcupine.Illegal)
	}
}

// TestNonAtomicRecordAlone runs the broken record with one instance, one
// operation at a time: then it is correct, so what the check catches above
// is its lack of atomicity, not a disagreement with the model.
func TestNonAtomicRecordAlone(t *testing.T) {
	be, client, targets := newScripts(t)
	broken := &nonAtomic{scripts: *be, client: client}
	history := workload(t, broken, targets, 1, 1500, time.Now().UnixNano())
	if res, info := porcupine.CheckOperationsVerbose(model(), history, checkTimeout); res != porcupine.Ok {
		explain(t, history, info)
		t.Fatalf("sequential history of the non-atomic record: %s, want %s", res, porcupine.Ok)
	}
}

// cover logs what the history exercised and fails when it missed what the
// check is for. What the scripts did with the runs of failures is not in
// their replies: it comes from replaying the linearization the check found
// through the model.
func cover(t *testing.T, history []porcupine.Operation, info porcupine.LinearizationInfo) {
	t.Helper()
	// what the runs of failures went through, on the shared breakers and
	// in the scenarios
	var shared, scenes [len(hitNames)]int
	for _, partials := range info.PartialLinearizationsOperations() {
		var longest []porcupine.Operation
		for _, l := range partials {
			if len(l) > len(longest) {
				longest = l
			}
		}
		s := state{}
		for _, op := range longest {
			in, out := op.Input.(*input), op.Output.(*output)
			var h hits
			s, _, _, h = trace(s, in, out.nowUs, out.short)
			seen := &shared
			if in.pol == scenarioPolicy {
				seen = &scenes
			}
			for i := range seen {
				if h&(1<<i) != 0 {
					seen[i]++
				}
			}
		}
	}
	var runs []string
	for i, name := range hitNames {
		runs = append(runs, fmt.Sprintf("%s: %d+%d", name, shared[i], scenes[i]))
		if shared[i]+scenes[i] == 0 {
			t.Errorf("no %q in the history", name)
		} else if shared[i] == 0 && sharedHits&(1<<i) != 0 {
			t.Errorf("no %q on the shared breakers", name)
		}
	}
	t.Logf("runs of failures (shared breakers+scenarios): %s", strings.Join(runs, ", "))
	verdicts, reasons, kinds := map[string]int{}, map[string]int{}, map[string]int{}
	quorum, short, renew := 0, 0, 0
	for _, op := range history {
		in, out := op.Input.(*input), op.Output.(*output)
		kinds[in.kind.String()]++
		verdicts[out.verdict]++
		if out.short {
			short++
		}
		if in.renew {
			renew++
		}
		if out.changed {
			reasons[out.why]++
		}
		if out.troubled >= 2 {
			quorum++
		}
	}
	t.Logf("operations: %v", kinds)
	t.Logf("verdicts: %v", verdicts)
	t.Logf("transitions made: %v", reasons)
	t.Logf("replies with a quorum of troubled instances: %d", quorum)
	t.Logf("short answers (the fast path): %d of %d records; renewals asked: %d", short, kinds["record"], renew)
	if short < minShort {
		t.Errorf("%d short answers in the history, want at least %d", short, minShort)
	}
	if quorum == 0 {
		t.Errorf("no reply with a quorum of troubled instances in the history")
	}
	for _, v := range []string{"allow", "probe", "reject", "counted", "stale", "duplicate"} {
		if verdicts[v] == 0 {
			t.Errorf("no %q verdict in the history", v)
		}
	}
	for _, r := range []string{"consecutive_failures", "failure_rate", "open_timeout", "probe_failed",
		"probes_succeeded", "reset", "slow_call_rate"} {
		if reasons[r] == 0 {
			t.Errorf("no transition for %q in the history", r)
		}
	}
}

// explain logs, for each partition, the state after the longest prefix
// the model could linearize and what the model would have answered to the
// operations called around the end of that prefix and not in it.
func explain(t *testing.T, history []porcupine.Operation, info porcupine.LinearizationInfo) {
	t.Helper()
	if f, err := os.CreateTemp("", "breakwater-linearizability-*.html"); err == nil {
		if porcupine.Visualize(model(), info, f) == nil {
			t.Logf("visualization: %s", f.Name())
		}
		_ = f.Close()
	}
	type key struct {
		in   *input
		call int64
	}
	parts := model().Partition(history)
	for p, partials := range info.PartialLinearizationsOperations() {
		var longest []porcupine.Operation
		for _, l := range partials {
			if len(l) > len(longest) {
				longest = l
			}
		}
		if len(longest) == 0 || p >= len(parts) {
			continue
		}
		s := state{}
		done := map[key]bool{}
		var lastReturn int64
		for _, op := range longest {
			_, s = step(s, op.Input.(*input), op.Output.(*output))
			done[key{op.Input.(*input), op.Call}] = true
			lastReturn = max(lastReturn, op.Return)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "partition %d: %d of %d operations linearized; then %s\n", p, len(longest),
			len(parts[p]), model().DescribeState(s))
		var next []porcupine.Operation
		for _, o := range parts[p] {
			if !done[key{o.Input.(*input), o.Call}] && o.Call <= lastReturn {
				next = append(next, o)
			}
		}
		sort.Slice(next, func(i, j int) bool { return next[i].Call < next[j].Call })
		for _, o := range next {
			in, out := o.Input.(*input), o.Output.(*output)
			_, want, _ := apply(s, in, out.nowUs, out.short)
			fmt.Fprintf(&b, "  next? %s\n    got  %+v\n    want %+v\n", describe(in, out), *out, want)
		}
		t.Log(b.String())
	}
}
