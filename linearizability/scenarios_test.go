package linearizability

import (
	"context"
	"fmt"
	"time"
)

// The scenarios: one client runs, over and over while the instances run,
// short sequences of records on a breaker of its own that take the
// consecutive-failures policy down each of its paths (runs of one instance
// and of several, failures that have not settled and those that have, by
// their age or by SettledThrough, successes that end all of a run or part
// of it, a run longer than the store keeps). Their operations go into the
// history like any other, so the check holds the model to them; and each
// scenario checks what the store answered against what the policy says,
// so that the model and the scripts cannot agree on something else.
//
// The batches say their failures settle only after an hour, so that what
// settles is what the scenario says, whatever the machine's pace.

// scenarioPolicy is the scenarios' breaker: it trips on 3 consecutive
// failures and on nothing else.
var scenarioPolicy = &policy{consecutive: 3, minCalls: 20, window: 60_000, probes: 1, successes: 1,
	lease: 5, open: 3, openMax: 3}

// minRounds is the least number of rounds of the scenarios in a run.
const minRounds = 3

// allSettled is a SettledThrough later than any clock: every failure has
// settled.
const allSettled = int64(1) << 52

// hourUs is an hour in µs: the scenarios' settling time.
const hourUs = int64(time.Hour / time.Microsecond)

// scene is one round of the scenarios.
type scene struct {
	r      *run
	ctx    context.Context
	tg     target
	seq    *[instances]int64
	gen    int64
	name   string
	failed bool
}

// do carries out in on the scenarios' breaker as instance inst.
func (c *scene) do(inst int, in *input) *output {
	in.breaker, in.name, in.pol, in.inst, in.known = len(c.r.targets), c.tg.name, c.tg.pol, inst, c.gen
	if in.kind == opRecord {
		c.seq[inst]++
		in.seq, in.gen = c.seq[inst], c.gen
	}
	out := c.r.call(c.ctx, 2*instances, in)
	if out == nil {
		c.failed = true
		return &output{}
	}
	c.gen = max(c.gen, out.gen)
	return out
}

// fail records ko failures in a row that began age µs ago.
func (c *scene) fail(inst int, ko, age, through int64) *output {
	return c.do(inst, &input{kind: opRecord, through: through,
		batch: batch{ko: ko, lead: ko, trail: ko, koAge: age, settle: hourUs}})
}

// succeed records one success that happened age µs ago, after lead
// failures.
func (c *scene) succeed(inst int, lead, age, through int64) *output {
	return c.do(inst, &input{kind: opRecord, through: through,
		batch: batch{ok: 1, ko: lead, lead: lead, okAge: age, settle: hourUs}})
}

// look sends an empty batch: a look at the failures settled through.
func (c *scene) look(inst int, through int64) *output {
	return c.do(inst, &input{kind: opRecord, through: through, batch: batch{settle: hourUs}})
}

// begin starts a scenario on a breaker reset to closed.
func (c *scene) begin(name string) {
	c.name = name
	c.do(0, &input{kind: opForce, cmd: "reset"})
}

// want checks the state and the consecutive failures the store answered.
func (c *scene) want(step string, out *output, st string, cf int64) {
	if c.failed {
		return
	}
	switch {
	case out.st != st:
		c.r.t.Errorf("scenario %q, %s: state %s (%s), want %s", c.name, step, out.st, out.why, st)
	case st == "open" && (out.why != "consecutive_failures" || !out.changed):
		c.r.t.Errorf("scenario %q, %s: open for %s, changed %v; want a trip on consecutive failures now",
			c.name, step, out.why, out.changed)
	case st == "closed" && out.cf != cf:
		c.r.t.Errorf("scenario %q, %s: %d consecutive failures, want %d", c.name, step, out.cf, cf)
	}
}

// scenarios runs one round of the scenarios on tg. Instances 0, 1 and 2
// are A, B and C.
func (r *run) scenarios(ctx context.Context, tg target) {
	c := &scene{r: r, ctx: ctx, tg: tg, seq: &r.sceneSeq}
	const a, b, cc = 0, 1, 2

	c.begin("one instance's run counts at once")
	c.want("A fails 2", c.fail(a, 2, 0, 0), "closed", 2)
	c.want("A fails 1", c.fail(a, 1, 0, 0), "open", 0)

	c.begin("a run of several waits for its failures to settle")
	c.fail(a, 2, 0, 0)
	tb := c.fail(b, 1, 0, 0)
	c.want("B fails 1", tb, "closed", 3)
	c.want("C looks, nothing settled", c.look(cc, 0), "closed", 3)
	c.want("C looks, settled through B's failure", c.look(cc, tb.nowUs), "open", 0)

	c.begin("an old success sees the settled run")
	c.fail(a, 2, 0, 0)
	tb = c.fail(b, 1, 0, 0)
	c.want("C's success an hour old, settled through B's failure", c.succeed(cc, 0, hourUs, tb.nowUs), "open", 0)

	c.begin("a success ends a run that has not settled")
	c.fail(a, 2, 0, 0)
	c.fail(b, 1, 0, 0)
	c.want("C succeeds", c.succeed(cc, 0, 0, 0), "closed", 0)
	c.want("A fails 1", c.fail(a, 1, 0, 0), "closed", 1)

	c.begin("a run a success ended trips once it settles")
	c.fail(a, 2, 0, 0)
	c.fail(b, 1, 0, 0)
	tc := c.succeed(cc, 0, 0, 0)
	c.want("C succeeds", tc, "closed", 0)
	c.want("C looks, settled through its success", c.look(cc, tc.nowUs), "open", 0)

	c.begin("an instance's batches keep its own order")
	c.fail(a, 2, 0, 0)
	// A's success, sent after its failures though its age says before them
	c.want("A's success, half an hour old", c.succeed(a, 0, 30*60_000_000, 0), "closed", 0)
	c.want("A fails 1", c.fail(a, 1, 0, 0), "closed", 1)

	c.begin("a success reported late splits a run a success ended")
	c.fail(a, 2, 30*60_000_000, 0) // half an hour ago
	c.fail(b, 1, 0, 0)
	c.want("C succeeds", c.succeed(cc, 0, 0, 0), "closed", 0)
	c.want("A's success 20 minutes ago", c.succeed(a, 0, 20*60_000_000, 0), "closed", 0)
	c.want("C looks, all settled", c.look(cc, allSettled), "closed", 0)

	c.begin("failures after a success that ended the run are a run of their own")
	c.fail(a, 2, 0, 0)
	c.fail(b, 1, 0, 0)
	c.want("C succeeds, then fails 2", c.do(cc, &input{kind: opRecord,
		batch: batch{ok: 1, ko: 2, trail: 2, settle: hourUs}}), "closed", 2)
	c.want("C fails 1", c.fail(cc, 1, 0, 0), "open", 0)

	c.begin("a success ends the failures before it only")
	c.fail(a, 1, 30*60_000_000, 0) // half an hour ago
	c.want("B fails 1", c.fail(b, 1, 0, 0), "closed", 2)
	c.want("C's success 20 minutes ago", c.succeed(cc, 0, 20*60_000_000, 0), "closed", 1)
	c.want("A fails 1", c.fail(a, 1, 0, 0), "closed", 2)

	c.begin("the failures before a success add to the settled run")
	c.fail(a, 1, 0, 0)
	tb = c.fail(b, 1, 0, 0)
	c.want("C: 1 failure, then a success, settled through B's failure", c.succeed(cc, 1, 0, tb.nowUs), "open", 0)

	c.begin("failures settle through the asking instance's time")
	c.fail(a, 2, 0, 0)
	tb = c.fail(b, 1, 0, 0)
	c.want("B fails 1, settled through its last failure", c.fail(b, 1, 0, tb.nowUs), "open", 0)

	c.begin("outcomes reported one by one settle at once")
	c.fail(a, 2, 0, 0)
	c.want("B fails 1, settle 0", c.do(b, &input{kind: opRecord,
		batch: batch{ko: 1, lead: 1, trail: 1}}), "open", 0)

	c.begin("a run longer than the store keeps")
	n := int64(maxRun + 3)
	for i := int64(1); i <= n; i++ {
		c.want(fmt.Sprintf("failure %d", i), c.fail(int(i%2), 1, 0, 0), "closed", i)
	}
	c.want("C succeeds", c.succeed(cc, 0, 0, 0), "closed", 0)

	c.begin("the oldest entries merge into the oldest time")
	var first int64
	for i := int64(1); i <= n; i++ {
		out := c.fail(int(i%2), 1, 0, 0)
		if i == 1 {
			first = out.nowUs
		}
	}
	// the entries of failures 1 to 4 merged at the time of the first
	c.want("C looks, settled until just before the first failure", c.look(cc, first-1), "closed", n)
	c.want("C looks, settled through the first failure", c.look(cc, first), "open", 0)
}
