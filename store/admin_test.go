package store_test

// List and Inspect against real redis-server processes (internal/redistest):
// a single node and a Cluster.

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

// adminSettings trip after 3 consecutive failures and stay open an hour.
var adminSettings = breaker.Settings{ConsecutiveFailures: 3, OpenDuration: time.Hour}

func newAdminStore(t *testing.T, c redis.UniversalClient, prefix string) *store.Store {
	t.Helper()
	st, err := store.New(c, store.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func adminBreaker(t *testing.T, st *store.Store, name, instance string, s breaker.Settings) *breaker.Breaker {
	t.Helper()
	s.Instance = instance
	b, err := breaker.New(name, st, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func adminCalls(t *testing.T, b *breaker.Breaker, errs ...error) {
	t.Helper()
	for _, e := range errs {
		p, err := b.Allow(context.Background())
		if err != nil {
			t.Fatalf("%s: Allow: %v", b.Name(), err)
		}
		p.Done(context.Background(), e)
	}
	// Successes are reported in batches: deliver them before Inspect reads.
	if err := b.Flush(context.Background()); err != nil {
		t.Fatalf("%s: Flush: %v", b.Name(), err)
	}
}

var errAdmin = errors.New("dependency failed")

func TestListAndInspect(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	// A prefix with glob characters, and a store whose prefix only looks alike.
	st := newAdminStore(t, c, "adm[1]*")
	other := newAdminStore(t, c, "adm1x")

	closed := adminBreaker(t, st, "api:closed", "pod-1", adminSettings)
	adminCalls(t, closed, nil, nil, errAdmin)
	open := adminBreaker(t, st, "api:open", "pod-2", adminSettings)
	adminCalls(t, open, errAdmin, errAdmin, errAdmin)
	forced := adminBreaker(t, st, "forced", "pod-3", adminSettings)
	if err := forced.ForceOpen(ctx); err != nil {
		t.Fatal(err)
	}
	disabled := adminBreaker(t, st, "off", "pod-4", adminSettings)
	if err := disabled.Disable(ctx); err != nil {
		t.Fatal(err)
	}
	rate := adminBreaker(t, st, "rate", "pod-5", breaker.Settings{ConsecutiveFailures: breaker.Off, FailureRate: 0.9, MinimumCalls: 100})
	adminCalls(t, rate, nil, errAdmin, nil, errAdmin, nil)
	half := adminBreaker(t, st, "half", "pod-6", adminSettings)
	if err := half.ForceOpenFor(ctx, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	probe := waitProbe(t, half)
	defer probe.Done(ctx, nil)
	adminCalls(t, adminBreaker(t, other, "api:elsewhere", "pod-7", adminSettings), nil)

	t.Run("List", func(t *testing.T) {
		tests := []struct {
			pattern string
			want    []string
		}{
			{"", []string{"api:closed", "api:open", "forced", "half", "off", "rate"}},
			{"*", []string{"api:closed", "api:open", "forced", "half", "off", "rate"}},
			{"api:*", []string{"api:closed", "api:open"}},
			{"[fo]*", []string{"forced", "off"}},
			{"r?te", []string{"rate"}},
			{"nothing*", []string{}},
		}
		for _, tt := range tests {
			got, err := st.List(ctx, tt.pattern)
			if err != nil {
				t.Fatalf("List(%q): %v", tt.pattern, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("List(%q): got %q, want %q", tt.pattern, got, tt.want)
			}
		}
		for _, p := range []string{"{x}", "a[b", `a\`, "a\nb"} {
			if _, err := st.List(ctx, p); !errors.Is(err, store.ErrBadPattern) {
				t.Errorf("List(%q): got %v, want ErrBadPattern", p, err)
			}
		}
	})

	t.Run("Inspect", func(t *testing.T) {
		sts, err := st.Inspect(ctx, store.InspectOptions{}, "api:closed", "api:open", "forced", "off", "rate", "half", "missing")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sts {
			if s.Err != nil {
				t.Fatalf("%s: %v", s.Name, s.Err)
			}
			if s.Exists && (s.Generation <= 0 || s.Now.IsZero() || s.ChangedAt.After(s.Now)) {
				t.Errorf("%s: generation %d, changed at %v, now %v", s.Name, s.Generation, s.ChangedAt, s.Now)
			}
		}
		type row struct {
			name            string
			exists          bool
			state, from     breaker.State
			reason, by      string
			ok, ko, cf      uint64
			wcalls, wfails  uint64
			windowed        bool
			leases          int
			instances       string
			probeSoon, zero bool // NextProbeIn near an hour; zero
		}
		want := []row{
			{name: "api:closed", exists: true, state: breaker.Closed, from: breaker.Closed, reason: "created", by: "pod-1", ok: 2, ko: 1, cf: 1, instances: "pod-1", zero: true},
			{name: "api:open", exists: true, state: breaker.Open, from: breaker.Closed, reason: "consecutive_failures", by: "pod-2", instances: "pod-2", probeSoon: true},
			{name: "forced", exists: true, state: breaker.ForcedOpen, from: breaker.Closed, reason: "forced_open", by: "pod-3", instances: "pod-3", zero: true},
			{name: "off", exists: true, state: breaker.Disabled, from: breaker.Closed, reason: "disabled", by: "pod-4", instances: "pod-4", zero: true},
			{name: "rate", exists: true, state: breaker.Closed, from: breaker.Closed, reason: "created", by: "pod-5", ok: 3, ko: 2, wcalls: 5, wfails: 2, windowed: true, instances: "pod-5", zero: true},
			{name: "half", exists: true, state: breaker.HalfOpen, from: breaker.Open, reason: "open_timeout", by: "pod-6", leases: 1, instances: "pod-6", zero: true},
			{name: "missing", zero: true},
		}
		for i, w := range want {
			s := sts[i]
			got := row{name: s.Name, exists: s.Exists, state: s.State, from: s.From, reason: s.Reason, by: s.ChangedBy,
				ok: s.Counts.Successes, ko: s.Counts.Failures, cf: s.Counts.ConsecutiveFailures,
				wcalls: s.Counts.WindowCalls, wfails: s.Counts.WindowFailures, windowed: s.Windowed, leases: s.Leases,
				instances: strings.Join(s.Instances, ","),
				probeSoon: s.NextProbeIn > 59*time.Minute && s.NextProbeIn <= time.Hour, zero: s.NextProbeIn == 0}
			if got != w {
				t.Errorf("%s:\n got %+v\nwant %+v", w.name, got, w)
			}
		}
		if tr := sts[1].Counts.Trips; tr != 1 {
			t.Errorf("api:open: trips %d, want 1", tr)
		}
		if pf := sts[1].Counts.PreviousFailures; pf != 3 {
			t.Errorf("api:open: previous failures %d, want 3", pf)
		}
	})

	t.Run("Inspect creates nothing", func(t *testing.T) {
		if n, err := c.Exists(ctx, st.Keys("missing")...).Result(); err != nil || n != 0 {
			t.Fatalf("keys of an inspected missing breaker: %d, %v; want none", n, err)
		}
	})

	t.Run("Corrupt", func(t *testing.T) {
		k := st.Keys("api:closed")
		c.HSet(ctx, k[0], "gen", "seven", "extra", "ignored")
		c.Del(ctx, st.Keys("off")[1])
		c.Set(ctx, st.Keys("off")[1], "not a hash", 0)
		sts, err := st.Inspect(ctx, store.InspectOptions{}, "api:closed", "off", "forced")
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []string{k[0] + ": field gen is \"seven\"", st.Keys("off")[1] + ": WRONGTYPE"} {
			if e := sts[i].Err; !errors.Is(e, store.ErrCorrupt) || !strings.Contains(e.Error(), want) {
				t.Errorf("%s: got %v, want ErrCorrupt saying %q", sts[i].Name, e, want)
			}
		}
		if sts[2].Err != nil || sts[2].State != breaker.ForcedOpen {
			t.Errorf("forced beside corrupt ones: got %v %v", sts[2].State, sts[2].Err)
		}
	})

	t.Run("Bad names", func(t *testing.T) {
		if _, err := st.Inspect(ctx, store.InspectOptions{}, "a{b}"); !errors.Is(err, breaker.ErrInvalidSettings) {
			t.Fatalf("got %v, want ErrInvalidSettings", err)
		}
	})

	t.Run("Unreachable", func(t *testing.T) {
		dead := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
		defer dead.Close()
		ds := newAdminStore(t, dead, "adm")
		srv.Stop()
		if _, err := ds.List(ctx, "*"); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("List: got %v, want ErrUnavailable", err)
		}
		if _, err := ds.Inspect(ctx, store.InspectOptions{}, "x"); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("Inspect: got %v, want ErrUnavailable", err)
		}
	})
}

// waitProbe waits for b's open time to end on Redis's clock and returns a
// probe's permit.
func waitProbe(t *testing.T, b *breaker.Breaker) breaker.Permit {
	t.Helper()
	deadline := time.Now().Add(fleetWait)
	for {
		p, err := b.Allow(context.Background())
		if err == nil {
			if !p.Probe() {
				t.Fatalf("%s: a call was admitted, not a probe", b.Name())
			}
			return p
		}
		var oe *breaker.OpenError
		if !errors.As(err, &oe) || time.Now().After(deadline) {
			t.Fatalf("%s: waiting for a probe: %v", b.Name(), err)
		}
		<-time.After(max(oe.NextProbeIn, time.Millisecond))
	}
}

func TestListCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	c := cl.Client(t)
	ctx := context.Background()
	st := newAdminStore(t, c, "adm")
	var want []string
	for i := 0; i < 30; i++ {
		name := fmt.Sprintf("svc-%02d", i)
		want = append(want, name)
		b := adminBreaker(t, st, name, "pod", adminSettings)
		adminCalls(t, b, errAdmin)
	}
	// The names spread over the masters.
	masters := map[string]bool{}
	for _, n := range want {
		slot, err := c.ClusterKeySlot(ctx, st.Keys(n)[0]).Result()
		if err != nil {
			t.Fatal(err)
		}
		masters[fmt.Sprint(slot*3/16384)] = true
	}
	if len(masters) != 3 {
		t.Fatalf("30 breakers on %d of 3 masters", len(masters))
	}
	got, err := st.List(ctx, "svc-*")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("List: got %q, want %q", got, want)
	}
	sts, err := st.Inspect(ctx, store.InspectOptions{}, got...)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sts {
		if s.Err != nil || !s.Exists || s.Counts.Failures != 1 || s.Counts.ConsecutiveFailures != 1 {
			t.Errorf("%s: got exists=%v failures=%d cf=%d err=%v, want one failure", s.Name, s.Exists, s.Counts.Failures, s.Counts.ConsecutiveFailures, s.Err)
		}
	}
}
