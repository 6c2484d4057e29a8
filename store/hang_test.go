package store_test

// A Redis that holds commands without answering them, against real
// redis-server processes: frozen with SIGSTOP, or paused with CLIENT PAUSE
// ALL. Either way the commands the instances sent meanwhile run late, once
// Redis goes on, after the instances gave up on them and sent their
// outcomes again: each outcome must still count exactly once.

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

func TestRedisHoldsCommands(t *testing.T) {
	t.Parallel()
	const (
		timeout = 250 * time.Millisecond
		// slack covers scheduling under -race on a busy machine; far below
		// the hang, so that a call that waited for Redis would show.
		slack = time.Second
		hang  = 3 * time.Second
		// threshold is above the failures made while Redis holds
		// commands, which it runs late and in any order.
		threshold = 10
	)
	tests := []struct {
		name     string
		hold     func(*redistest.Server)
		goesOn   func(*redistest.Server) // nil: Redis goes on by itself
		calls    int                     // per instance while Redis holds commands
		failures int                     // of them
	}{
		{"SIGSTOP", (*redistest.Server).Freeze, (*redistest.Server).Thaw, 20, 2},
		{"CLIENT PAUSE", func(s *redistest.Server) { s.Pause(hang) }, nil, 20, 2},
	}
	for _, tt := range tests {
		tt := tt
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			o := store.Options{Prefix: "hang", Timeout: timeout}
			var fleet []*faultInstance
			var key string
			for i := 0; i < 3; i++ {
				st := faultStore(t, srv.Client(t), o)
				s := breaker.Settings{ConsecutiveFailures: threshold, OpenDuration: time.Minute, Fallback: breaker.FallbackOpen,
					Instance: fmt.Sprintf("pod-%d", i)}
				fleet = append(fleet, faultAttach(t, st, "inventory", s))
				key = st.Keys("inventory")[0]
			}
			raw := srv.Client(t)
			for _, in := range fleet {
				succeed(t, in.b, 5)
				flush(t, in.b)
			}
			base := readTotals(t, raw, key)

			tt.hold(srv)
			began := time.Now()
			ctx := context.Background()
			var slowest time.Duration
			for _, in := range fleet {
				for j := 0; j < tt.calls; j++ {
					var err error
					if j < tt.failures {
						err = errFault
					}
					t0 := time.Now()
					p, aerr := in.b.Allow(ctx)
					if aerr != nil {
						t.Fatalf("%s: Allow while Redis holds commands: %v (FallbackOpen admits every call)", in.b.Instance(), aerr)
					}
					p.Done(ctx, err) // a failure waits for the store's answer
					slowest = max(slowest, time.Since(t0))
				}
			}
			if slowest > timeout+slack {
				t.Errorf("slowest call while Redis held commands: %v, want at most the store's timeout %v (+%v)", slowest, timeout, slack)
			}
			if took := time.Since(began); took >= hang {
				t.Logf("the calls took %v, longer than the hang (%v): the machine is slow", took, hang)
			}
			for _, in := range fleet {
				e := in.await(t, "store-unavailable", kindIs(breaker.StoreUnavailable))
				if !errors.Is(e.Err, store.ErrUnavailable) {
					t.Errorf("%s: store-unavailable event: %v, want an error matching store.ErrUnavailable", in.b.Instance(), e.Err)
				}
			}
			if tt.goesOn != nil {
				tt.goesOn(srv)
			}
			for _, in := range fleet {
				e := in.await(t, "store-recovered", kindIs(breaker.StoreRecovered))
				if e.Unreported == 0 {
					t.Errorf("%s: store-recovered: nothing unreported, want the outcomes made while Redis held commands", in.b.Instance())
				}
				flush(t, in.b)
			}
			// The commands Redis held ran late, beside the instances' new
			// attempts: every outcome counts once all the same.
			got := readTotals(t, raw, key)
			n := int64(len(fleet))
			want := totals{gen: got.gen, exists: true, ok: base.ok + n*int64(tt.calls-tt.failures),
				ko: base.ko + n*int64(tt.failures), stale: base.stale}
			if got != want {
				t.Errorf("totals: got %v, want %v", got, want)
			}
			// And the fleet follows the shared state again.
			for _, in := range fleet {
				in.drain()
			}
			fail(t, fleet[0].b, threshold)
			for _, in := range fleet {
				in.await(t, "state-changed to open", changedTo(breaker.Open))
			}
		})
	}
}
