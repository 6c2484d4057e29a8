package redistest

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

// get returns the value of key, or "" when there is none.
func get(t *testing.T, c *redis.Client, key string) string {
	t.Helper()
	v, err := c.Get(context.Background(), key).Result()
	if err != nil && err != redis.Nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	return v
}

func set(t *testing.T, c *redis.Client, key, value string) {
	t.Helper()
	if err := c.Set(context.Background(), key, value, 0).Err(); err != nil {
		t.Fatalf("SET %s: %v", key, err)
	}
}

func TestRestartFromAnOlderSnapshot(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := s.Client(t)
	set(t, c, "k", "old")
	snap := s.Save()
	set(t, c, "k", "new")
	set(t, c, "later", "x")
	s.RestartFrom(snap)
	if got := get(t, c, "k"); got != "old" {
		t.Errorf("after RestartFrom: k = %q, want %q", got, "old")
	}
	if got := get(t, c, "later"); got != "" {
		t.Errorf("after RestartFrom: later = %q, want none", got)
	}
	// A plain Restart still starts empty.
	s.Restart()
	if got := get(t, c, "k"); got != "" {
		t.Errorf("after Restart: k = %q, want none", got)
	}
}

func TestLaggingReplicaPromoted(t *testing.T) {
	t.Parallel()
	m := Start(t)
	mc := m.Client(t)
	set(t, mc, "k", "synced")
	r := StartReplica(t, m)
	rc := r.Client(t)
	if got := get(t, rc, "k"); got != "synced" {
		t.Fatalf("replica: k = %q, want %q", got, "synced")
	}
	set(t, mc, "k", "v2")
	r.Sync()
	if got := get(t, rc, "k"); got != "v2" {
		t.Fatalf("replica after Sync: k = %q, want %q", got, "v2")
	}
	r.Hold()
	set(t, mc, "k", "missed")
	m.Stop()
	r.Promote()
	if got := get(t, rc, "k"); got != "v2" {
		t.Errorf("promoted replica: k = %q, want %q (what it had before Hold)", got, "v2")
	}
	set(t, rc, "k", "written") // a master now
	if got := get(t, rc, "k"); got != "written" {
		t.Errorf("promoted replica: k = %q after SET, want %q", got, "written")
	}
}
