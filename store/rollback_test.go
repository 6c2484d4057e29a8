package store_test

// The rollback rule (lua/lib.lua), against real redis-server processes: a
// store that went back is the truth. Each way into it (a restore from an
// older RDB snapshot, a lagging replica promoted, FLUSHALL, a restart with
// no persistence) and SCRIPT FLUSH, which loses no data, is played on a
// fleet of three instances, each with its own client and store:
//
//  1. History the store keeps: instance 0 trips the breaker, instance 1
//     closes it, every instance reports successes. Then the checkpoint:
//     what the store will go back to (the RDB snapshot, the replica's last
//     acknowledged write; nothing for FLUSHALL and a restart).
//  2. History the store forgets: every instance takes permits that it
//     holds (calls in flight), reports more successes, and instance 0 trips
//     the breaker again (generation g, the highest any instance knows).
//  3. The event; the held calls end (during the outage, when there is one).
//
// Then, whatever the way in:
//   - the store's generation moves past g, by itself (instances catch up on
//     resubscribing after an outage, or on their periodic read);
//   - every instance follows the store: it hears the breaker close (the
//     store went back to a closed breaker), and a trip by instance 1 is
//     heard by all;
//   - the held calls, admitted under a generation the store forgot had
//     ended, are counted, not dropped as stale, each exactly once.
//
// What the totals must be afterwards (tok: successes, tko: failures,
// tstale: stale outcomes), with base the totals at the checkpoint:
//   - restore and lagging replica: base + the held calls' successes + the
//     failures of the trip afterwards. What was counted after the checkpoint
//     is lost with Redis's data: that loss is Redis's, not Breakwater's.
//   - FLUSHALL and restart: the held calls' successes and the failures of
//     the trip afterwards only: the store forgot everything before.
//   - SCRIPT FLUSH: nothing is lost; the scripts load again. The store did
//     not go back, so the held calls are stale (their generation ended with
//     the trip in step 2): counted in the totals and in tstale.

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

const (
	rollbackName      = "ledger"
	rollbackFleet     = 3
	rollbackThreshold = 3 // consecutive failures that trip
	rollbackHeld      = 4 // calls each instance holds through the event
	rollbackEarly     = 10
	rollbackLate      = 5
)

// rollbackSettings trip on 3 consecutive failures and stay open a minute:
// an instance that follows the store back to a closed breaker does so
// because it follows the store, not because its open time ended. A periodic
// read every second finds a store that lost its keys without an outage.
var rollbackSettings = breaker.Settings{ConsecutiveFailures: rollbackThreshold, OpenDuration: time.Minute,
	RefreshInterval: time.Second}

// rollbackEnv is a fleet of instances whose clients dial the address in
// target, which a test may switch (a failover).
type rollbackEnv struct {
	t      *testing.T
	target atomic.Value // string: the address every client dials
	raw    *redis.Client
	fleet  []*faultInstance
	key    string // the breaker's state hash
}

func newRollbackEnv(t *testing.T, addr string) *rollbackEnv {
	t.Helper()
	e := &rollbackEnv{t: t}
	e.target.Store(addr)
	e.raw = e.client()
	o := store.Options{Prefix: "rollback", Timeout: 2 * time.Second}
	for i := 0; i < rollbackFleet; i++ {
		st := faultStore(t, e.client(), o)
		s := rollbackSettings
		s.Instance = fmt.Sprintf("pod-%d", i)
		e.fleet = append(e.fleet, faultAttach(t, st, rollbackName, s))
		e.key = st.Keys(rollbackName)[0]
	}
	return e
}

// client returns a client that dials the current target.
func (e *rollbackEnv) client() *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr: "redis.test:6379", // a name only: Dialer chooses the address
		Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, e.target.Load().(string))
		},
	})
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

func (e *rollbackEnv) totals() totals { return readTotals(e.t, e.raw, e.key) }

func (e *rollbackEnv) flushAll() {
	for _, in := range e.fleet {
		flush(e.t, in.b)
	}
}

// heardBy waits until every instance heard the breaker change to state to
// and returns the lowest generation they heard it with.
func (e *rollbackEnv) heardBy(to breaker.State) int64 {
	e.t.Helper()
	var low int64
	for i, in := range e.fleet {
		ev := in.await(e.t, "state-changed to "+to.String(), changedTo(to))
		if i == 0 || ev.Generation < low {
			low = ev.Generation
		}
	}
	return low
}

// trip makes instance i trip the breaker and waits until all heard it.
func (e *rollbackEnv) trip(i int) int64 {
	e.t.Helper()
	fail(e.t, e.fleet[i].b, rollbackThreshold)
	return e.heardBy(breaker.Open)
}

// early plays the history the store keeps and returns nothing: the
// checkpoint follows.
func (e *rollbackEnv) early() {
	e.t.Helper()
	ctx := context.Background()
	e.trip(0)
	if err := e.fleet[1].b.ForceClose(ctx); err != nil {
		e.t.Fatalf("ForceClose: %v", err)
	}
	e.heardBy(breaker.Closed)
	for _, in := range e.fleet {
		succeed(e.t, in.b, rollbackEarly)
	}
	e.flushAll()
}

// late plays the history the store will forget and returns the permits
// held through the event and the highest generation the fleet knows.
func (e *rollbackEnv) late() (held []breaker.Permit, known int64) {
	e.t.Helper()
	ctx := context.Background()
	for _, in := range e.fleet {
		for j := 0; j < rollbackHeld; j++ {
			p, err := in.b.Allow(ctx)
			if err != nil {
				e.t.Fatalf("%s: Allow: %v", in.b.Instance(), err)
			}
			held = append(held, p)
		}
		succeed(e.t, in.b, rollbackLate)
	}
	e.flushAll()
	known = e.trip(0)
	if got := e.totals().gen; got != known {
		e.t.Fatalf("after the trip: store at generation %d, fleet heard %d", got, known)
	}
	return held, known
}

// end ends the held calls, successes all.
func end(held []breaker.Permit) {
	for _, p := range held {
		p.Done(context.Background(), nil)
	}
}

// movesPast waits until the store's generation is above known, with no
// call of the test's: the instances catch up by themselves.
func (e *rollbackEnv) movesPast(known int64) {
	e.t.Helper()
	deadline := time.Now().Add(faultWait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		g, err := e.raw.HGet(ctx, e.key, "gen").Int64()
		cancel()
		if err == nil && g > known {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("store's generation %d (%v) not past %d, the highest the fleet knew, after %v", g, err, known, faultWait)
		}
		<-time.After(20 * time.Millisecond)
	}
}

// follows checks that every instance follows the store back to its closed
// breaker, under a generation past known, and that a trip by another
// instance than the one that tripped before is heard by all.
func (e *rollbackEnv) follows(known int64) {
	e.t.Helper()
	if g := e.heardBy(breaker.Closed); g <= known {
		e.t.Errorf("the fleet followed the store back under generation %d, want one past %d", g, known)
	}
	e.flushAll()
	if g := e.trip(1); g <= known {
		e.t.Errorf("trip after the rollback: generation %d, want one past %d", g, known)
	}
}

// wantTotals compares the store's totals with the outcomes made.
func (e *rollbackEnv) wantTotals(want totals) {
	e.t.Helper()
	e.flushAll()
	got := e.totals()
	want.gen, want.exists = got.gen, true
	if got != want {
		e.t.Errorf("totals: got %v, want %v", got, want)
	}
}

func TestRollbackRule(t *testing.T) {
	t.Parallel()
	held := int64(rollbackFleet * rollbackHeld)

	t.Run("restore from an older RDB snapshot", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		e := newRollbackEnv(t, srv.Addr())
		e.early()
		snapshot := srv.Save()
		base := e.totals()
		permits, known := e.late()
		srv.Stop()
		end(permits) // during the outage: they wait at the instances
		srv.RestartFrom(snapshot)
		e.movesPast(known)
		e.follows(known)
		e.wantTotals(totals{ok: base.ok + held, ko: base.ko + rollbackThreshold, stale: base.stale})
	})

	t.Run("lagging replica promoted", func(t *testing.T) {
		t.Parallel()
		master := redistest.Start(t)
		replica := redistest.StartReplica(t, master)
		e := newRollbackEnv(t, master.Addr())
		e.early()
		replica.Sync()
		base := e.totals()
		replica.Hold()
		permits, known := e.late()
		master.Stop()
		end(permits) // during the failover: they wait at the instances
		replica.Promote()
		if got := readTotals(t, replica.Client(t), e.key); got != base {
			t.Fatalf("promoted replica holds %v, want what it had acknowledged: %v", got, base)
		}
		e.target.Store(replica.Addr())
		e.movesPast(known)
		e.follows(known)
		e.wantTotals(totals{ok: base.ok + held, ko: base.ko + rollbackThreshold, stale: base.stale})
	})

	t.Run("FLUSHALL", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		e := newRollbackEnv(t, srv.Addr())
		e.early()
		permits, known := e.late()
		if err := e.raw.FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		// No outage tells the fleet: each instance's periodic read does.
		e.movesPast(known)
		end(permits)
		e.follows(known)
		e.wantTotals(totals{ok: held, ko: rollbackThreshold})
	})

	t.Run("kill and restart empty", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		e := newRollbackEnv(t, srv.Addr())
		e.early()
		permits, known := e.late()
		srv.Stop()
		end(permits) // during the outage: they wait at the instances
		srv.Restart()
		e.movesPast(known)
		e.follows(known)
		e.wantTotals(totals{ok: held, ko: rollbackThreshold})
	})

	t.Run("SCRIPT FLUSH", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		e := newRollbackEnv(t, srv.Addr())
		e.early()
		base := e.totals()
		permits, known := e.late()
		if err := e.raw.ScriptFlush(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		end(permits)
		e.flushAll()
		for _, in := range e.fleet {
			for _, ev := range in.drain() {
				if ev.Kind == breaker.StoreUnavailable {
					t.Errorf("%s: store-unavailable after SCRIPT FLUSH (%v), want the scripts loaded again", in.b.Instance(), ev.Err)
				}
			}
		}
		if got := e.totals().gen; got != known {
			t.Errorf("after SCRIPT FLUSH: generation %d, want %d (nothing lost)", got, known)
		}
		// The store did not go back: the breaker is still open. Another
		// instance closes it, a third trips it; all hear both.
		if err := e.fleet[2].b.ForceClose(context.Background()); err != nil {
			t.Fatalf("ForceClose after SCRIPT FLUSH: %v", err)
		}
		e.heardBy(breaker.Closed)
		e.trip(1)
		e.wantTotals(totals{
			ok:    base.ok + rollbackFleet*rollbackLate + held,
			ko:    base.ko + 2*rollbackThreshold,
			stale: base.stale + held,
		})
	})
}
