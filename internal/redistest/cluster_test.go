package redistest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestSlotRange(t *testing.T) {
	tests := []struct {
		i, n        int
		first, last int
	}{
		{0, 1, 0, 16383},
		{0, 3, 0, 5460},
		{1, 3, 5461, 10921},
		{2, 3, 10922, 16383},
	}
	for _, tt := range tests {
		first, last := slotRange(tt.i, tt.n)
		if first != tt.first || last != tt.last {
			t.Errorf("slotRange(%d, %d) = %d-%d, want %d-%d", tt.i, tt.n, first, last, tt.first, tt.last)
		}
	}
}

func TestClusterRoutesKeysAcrossSlots(t *testing.T) {
	t.Parallel()
	const masters, keys = 3, 100
	cl := StartCluster(t, masters)
	if got := len(cl.Addrs()); got != masters {
		t.Fatalf("len(Addrs()) = %d, want %d", got, masters)
	}
	c := cl.Client(t)
	ctx := context.Background()
	for i := 0; i < keys; i++ {
		if err := c.Set(ctx, fmt.Sprintf("key:%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET key:%d: %v", i, err)
		}
	}

	var mu sync.Mutex
	sizes := map[string]int64{}
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		mu.Lock()
		sizes[m.Options().Addr] = n
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatalf("DBSIZE on every master: %v", err)
	}
	var total int64
	for _, addr := range cl.Addrs() {
		if sizes[addr] == 0 {
			t.Errorf("master %s holds no key, want some of the %d (sizes %v)", addr, keys, sizes)
		}
		total += sizes[addr]
	}
	if total != keys {
		t.Errorf("keys over all masters = %d, want %d", total, keys)
	}

	// Keys sharing a hash tag share a slot, so one command may touch them all.
	if err := c.MSet(ctx, "{b}:state", "closed", "{b}:gen", 1).Err(); err != nil {
		t.Errorf("MSET of keys with one hash tag: %v", err)
	}
	if err := c.MSet(ctx, "a", 1, "b", 2).Err(); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Errorf("MSET of keys in different slots: got error %v, want CROSSSLOT", err)
	}
}

func TestClusterNodeRestartKeepsSlots(t *testing.T) {
	t.Parallel()
	cl := StartCluster(t, 2)
	n := cl.Nodes()[1]
	n.Restart()
	admin := n.Client(t)
	info, err := admin.ClusterInfo(context.Background()).Result()
	if err != nil {
		t.Fatalf("CLUSTER INFO after Restart: %v", err)
	}
	if got, want := parseInfo(info)["cluster_slots_assigned"], "16384"; got != want {
		t.Errorf("cluster_slots_assigned after Restart = %s, want %s", got, want)
	}
}
