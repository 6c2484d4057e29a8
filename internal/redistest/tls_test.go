package redistest

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestStartTLSAnswersOverTLSOnly(t *testing.T) {
	t.Parallel()
	certs := NewCerts(t)
	s := StartTLS(t, certs)
	ctx := context.Background()
	if err := s.Client(t).Ping(ctx).Err(); err != nil {
		t.Fatalf("PING over TLS: %v", err)
	}
	plain := s.Client(t, func(o *redis.Options) { o.TLSConfig, o.MaxRetries = nil, -1 })
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Errorf("PING over plain TCP: got no error, want one")
	}
	other := NewCerts(t)
	wrongCA := s.Client(t, func(o *redis.Options) { o.TLSConfig, o.MaxRetries = other.ClientConfig(), -1 })
	if err := wrongCA.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("PING trusting another CA: got %v, want a certificate error", err)
	}
}

func TestStartWithRequirePass(t *testing.T) {
	t.Parallel()
	s := Start(t, "--requirepass", "pw")
	ctx := context.Background()
	if err := s.Client(t).Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("PING without a password: got %v, want NOAUTH", err)
	}
	if err := s.Client(t, func(o *redis.Options) { o.Password = "pw" }).Ping(ctx).Err(); err != nil {
		t.Errorf("PING with the password: %v", err)
	}
	s.Pause(1) // Pause authenticates too
}

func TestStartSentinelKnowsItsMaster(t *testing.T) {
	t.Parallel()
	d := StartSentinel(t, 3)
	c := d.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET through the failover client: %v", err)
	}
	if got, want := len(d.SentinelAddrs()), 3; got != want {
		t.Errorf("len(SentinelAddrs()) = %d, want %d", got, want)
	}
}
