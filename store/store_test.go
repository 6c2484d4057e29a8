package store

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker/backend"
)

func goodReply() []interface{} {
	return []interface{}{"allow", "closed", int64(7), int64(0), "open", "probes_succeeded", "pod-1",
		int64(1500), int64(1), int64(2), int64(0), int64(0), int64(3), int64(2), int64(0), int64(1),
		int64(10), int64(20), int64(0), int64(4), "", int64(0), int64(0), int64(5), int64(1700000000000)}
}

func TestParseReply(t *testing.T) {
	r, err := parseReply(goodReply())
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != backend.VerdictAllow || r.State != backend.Closed || r.Generation != 7 || r.From != backend.Open ||
		r.InState != 1500*time.Millisecond || r.Counts.Failures != 2 || r.Counts.TotalStale != 4 || r.Counts.PreviousFailures != 5 ||
		!r.ServerTime.Equal(time.UnixMilli(1700000000000)) {
		t.Fatalf("got %+v", r)
	}
	tests := []struct {
		name   string
		mutate func([]interface{}) interface{}
		want   string
	}{
		{"not an array", func([]interface{}) interface{} { return "OK" }, "want an array"},
		{"too short", func(a []interface{}) interface{} { return a[:7] }, "want an array"},
		{"unknown verdict", func(a []interface{}) interface{} { a[0] = "maybe"; return a }, "field 1"},
		{"unknown state", func(a []interface{}) interface{} { a[1] = "ajar"; return a }, "field 2"},
		{"generation not a number", func(a []interface{}) interface{} { a[2] = "x"; return a }, "field 3"},
		{"negative count", func(a []interface{}) interface{} { a[9] = int64(-1); return a }, "field 10"},
		{"number where text belongs", func(a []interface{}) interface{} { a[5] = int64(3); return a }, "field 6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseReply(tt.mutate(goodReply()))
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrProtocol mentioning %q", err, tt.want)
			}
		})
	}
}

func TestParseAnnouncement(t *testing.T) {
	tests := []struct {
		payload string
		gen     int64
		name    string
		ok      bool
	}{
		{"42 payments", 42, "payments", true},
		{"42 name with spaces", 42, "name with spaces", true},
		{"42", 0, "", false},
		{"x payments", 0, "", false},
		{"-3 payments", 0, "", false},
		{"", 0, "", false},
	}
	for _, tt := range tests {
		gen, name, ok := parseAnnouncement(tt.payload)
		if gen != tt.gen || name != tt.name || ok != tt.ok {
			t.Errorf("parseAnnouncement(%q) = %d, %q, %v; want %d, %q, %v", tt.payload, gen, name, ok, tt.gen, tt.name, tt.ok)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	for _, o := range []Options{{Prefix: "a{b"}, {Prefix: "a b"}, {Timeout: -1}, {Cooldown: -1}, {IdleExpiry: time.Millisecond}} {
		if _, err := New(c, o); err == nil {
			t.Errorf("New(%+v) = nil error, want one", o)
		}
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New(nil) = nil error, want one")
	}
}

// A dead Redis costs one attempt per cooldown, not one per call.
func TestUnavailableRedisFailsFastDuringCooldown(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1})
	defer c.Close()
	var calls atomic.Int64
	c.AddHook(countHook{&calls})
	st, err := New(c, Options{Prefix: "cooldown", Cooldown: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st.runner.now = func() time.Time { return now }
	req := backend.Request{Name: "x", Instance: "i", Policy: &backend.Policy{ConsecutiveFailures: 5,
		MinimumCalls: 1, Window: time.Minute, WindowBuckets: 10, Quorum: 1, MaxProbes: 1, ProbeSuccesses: 1,
		ProbeLease: time.Second, OpenDuration: time.Second, MaxOpenDuration: time.Second}, Full: true}
	ctx := context.Background()
	if _, err := st.Read(ctx, req); err != nil {
		t.Fatal(err)
	}
	m.Close()
	before := calls.Load()
	for i := 0; i < 50; i++ {
		if _, err := st.Read(ctx, req); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d: got %v, want ErrUnavailable", i, err)
		}
	}
	if got := calls.Load() - before; got != 1 {
		t.Fatalf("50 calls during the cooldown sent %d commands, want 1", got)
	}
	now = now.Add(1100 * time.Millisecond)
	st.Read(ctx, req)
	st.Read(ctx, req)
	if got := calls.Load() - before; got != 2 {
		t.Fatalf("after the cooldown: %d commands in all, want 2 (one probe)", got)
	}
}

// countHook counts the commands a client sends.
type countHook struct{ n *atomic.Int64 }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
