package store_test

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/store"
)

// A nil client, or a nil pointer of a client type, is refused with an error
// instead of a panic on the first call.
func TestConstructorsRejectNilClients(t *testing.T) {
	var (
		client   *redis.Client
		cluster  *redis.ClusterClient
		ring     *redis.Ring
		failover = (*redis.Client)(nil) // what a failed NewFailoverClient assignment leaves
	)
	tests := []struct {
		name   string
		client redis.UniversalClient
		want   string
	}{
		{"nil interface", nil, "got nil"},
		{"nil *redis.Client", client, "nil *redis.Client"},
		{"nil *redis.ClusterClient", cluster, "nil *redis.ClusterClient"},
		{"nil *redis.Ring", ring, "nil *redis.Ring"},
		{"nil failover *redis.Client", failover, "nil *redis.Client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := store.New(tt.client, store.Options{})
			if err == nil {
				st.Close()
				t.Fatal("store.New: got no error, want one")
			}
			if !strings.HasPrefix(err.Error(), "store: New") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("store.New: got %q, want it to name New and %q", err, tt.want)
			}
			b, err := store.NewRetryBudget(tt.client, "b", store.BudgetOptions{})
			if err == nil {
				b.Close()
				t.Fatal("store.NewRetryBudget: got no error, want one")
			}
			if !strings.HasPrefix(err.Error(), "store: NewRetryBudget") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("store.NewRetryBudget: got %q, want it to name NewRetryBudget and %q", err, tt.want)
			}
		})
	}
}
