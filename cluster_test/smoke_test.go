package clustertest

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/cluster_test/internal/fleet"
)

// TestRedisContainerOutages checks the fleet harness itself: each outage it
// offers makes a call fail the way it should, and each recovery brings Redis
// back on the same address.
func TestRedisContainerOutages(t *testing.T) {
	r := fleet.StartRedis(t)
	c := r.Client(t, func(o *redis.Options) {
		o.DialTimeout = 300 * time.Millisecond
		o.ReadTimeout = 300 * time.Millisecond
		o.WriteTimeout = 300 * time.Millisecond
		o.MaxRetries = -1
	})
	ctx := context.Background()
	ping := func() error {
		t.Helper()
		return c.Ping(ctx).Err()
	}
	if err := ping(); err != nil {
		t.Fatalf("PING after StartRedis: %v", err)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	addr := r.Addr()

	r.Pause()
	err := ping()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("PING while paused: got error %v, want a timeout", err)
	}
	r.Unpause()
	if err := ping(); err != nil {
		t.Fatalf("PING after Unpause: got error %v, want nil", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Errorf("GET k after Unpause = %q, %v; want \"v\", nil (data kept)", got, err)
	}

	r.Disconnect()
	if err := ping(); err == nil {
		t.Errorf("PING while disconnected: got nil error, want a failure")
	}
	r.Connect()
	if got := r.Addr(); got != addr {
		t.Errorf("Addr() after Connect = %s, want %s", got, addr)
	}
	if err := ping(); err != nil {
		t.Fatalf("PING after Connect: got error %v, want nil", err)
	}

	r.Stop(0)
	if err := ping(); err == nil {
		t.Errorf("PING while stopped: got nil error, want a failure")
	}
	r.Start()
	if got := r.Addr(); got != addr {
		t.Errorf("Addr() after Start = %s, want %s", got, addr)
	}
	if err := ping(); err != nil {
		t.Fatalf("PING after Start: got error %v, want nil", err)
	}
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET k after Stop/Start: got error %v, want redis.Nil (data lost)", err)
	}
}
