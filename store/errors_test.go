package store_test

// The store's errors name their cause, against real redis-servers: a port
// nobody listens on, a host that does not exist, a wrong password, an ACL
// that denies the scripts, a certificate from another CA, a server loading
// its dataset. None prints the password.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker/backend"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

// causeWait bounds the wait for an error to name its cause; the first call
// may only see a timeout (go-redis dials in the background and returns the
// call's deadline), the background probe then finds the cause within
// milliseconds.
const causeWait = 10 * time.Second

// causePolicy is a breaker's policy for direct store calls.
func causePolicy() *backend.Policy {
	return &backend.Policy{ConsecutiveFailures: 3, MinimumCalls: 20, Window: time.Minute,
		WindowBuckets: 10, Quorum: 1, OpenDuration: time.Minute, MaxOpenDuration: time.Minute,
		MaxProbes: 1, ProbeSuccesses: 1, ProbeLease: time.Minute}
}

func causeStore(t *testing.T, c redis.UniversalClient) *store.Store {
	t.Helper()
	st, err := store.New(c, store.Options{Prefix: "cause", Timeout: 250 * time.Millisecond})
	if err != nil {
		t.Fatalf("store.New: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func readState(st *store.Store) error {
	_, err := st.Read(context.Background(), backend.Request{Name: "b", Instance: "i1", Policy: causePolicy()})
	return err
}

// waitCause calls the store until its error names want, and returns it.
func waitCause(t *testing.T, st *store.Store, want string) error {
	t.Helper()
	deadline := time.Now().Add(causeWait)
	var err error
	for time.Now().Before(deadline) {
		err = readState(st)
		var se *store.Error
		if errors.As(err, &se) && strings.Contains(se.Cause, want) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no error naming %q within %v; last error: %v", want, causeWait, err)
	return nil
}

func TestErrorsNameTheCause(t *testing.T) {
	t.Parallel()
	const password = "s3cret-Pa55word-never-printed"
	tests := []struct {
		name        string
		client      func(t *testing.T) redis.UniversalClient
		cause       string
		unavailable bool
		denied      bool
		is          error // also matched, when not nil
	}{
		{
			name: "connection refused",
			client: func(t *testing.T) redis.UniversalClient {
				s := redistest.Start(t)
				s.Stop()
				return redis.NewClient(&redis.Options{Addr: s.Addr(), Password: password})
			},
			cause: "connection refused", unavailable: true, is: syscall.ECONNREFUSED,
		},
		{
			name: "no such host",
			client: func(t *testing.T) redis.UniversalClient {
				return redis.NewClient(&redis.Options{Addr: "breakwater-test.invalid:6379", Password: password})
			},
			cause: "no such host", unavailable: true,
		},
		{
			name: "wrong password",
			client: func(t *testing.T) redis.UniversalClient {
				s := redistest.Start(t, "--requirepass", "the-right-one")
				return s.Client(t, func(o *redis.Options) { o.Password = password })
			},
			cause: "authentication failed", unavailable: true, denied: true,
		},
		{
			name: "no password",
			client: func(t *testing.T) redis.UniversalClient {
				s := redistest.Start(t, "--requirepass", password)
				return s.Client(t)
			},
			cause: "authentication failed", unavailable: true, denied: true,
		},
		{
			name: "ACL denies the scripts",
			client: func(t *testing.T) redis.UniversalClient {
				s := redistest.Start(t)
				admin := s.Client(t)
				if err := admin.Do(context.Background(), "ACL", "SETUSER", "limited", "on", ">"+password, "~*", "&*", "+ping", "+hgetall").Err(); err != nil {
					t.Fatalf("ACL SETUSER: %v", err)
				}
				return s.Client(t, func(o *redis.Options) { o.Username, o.Password = "limited", password })
			},
			cause: "NOPERM", denied: true,
		},
		{
			name: "TLS with another CA",
			client: func(t *testing.T) redis.UniversalClient {
				s := redistest.StartTLS(t, redistest.NewCerts(t))
				other := redistest.NewCerts(t) // a CA the server's certificate does not chain to
				return s.Client(t, func(o *redis.Options) { o.TLSConfig, o.Password = other.ClientConfig(), password })
			},
			cause: "TLS handshake failed", unavailable: true,
		},
		{
			name: "plain TCP to a TLS port",
			client: func(t *testing.T) redis.UniversalClient {
				s := redistest.StartTLS(t, redistest.NewCerts(t))
				return s.Client(t, func(o *redis.Options) { o.TLSConfig, o.Password = nil, password })
			},
			cause: "", unavailable: true,
		},
	}
	for _, tt := range tests {
		tt := tt
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := tt.client(t)
			t.Cleanup(func() { _ = c.Close() })
			st := causeStore(t, c)
			err := waitCause(t, st, tt.cause)
			t.Logf("error: %v", err)
			if got := errors.Is(err, store.ErrUnavailable); got != tt.unavailable {
				t.Errorf("errors.Is(err, ErrUnavailable) = %v, want %v", got, tt.unavailable)
			}
			if got := errors.Is(err, store.ErrDenied); got != tt.denied {
				t.Errorf("errors.Is(err, ErrDenied) = %v, want %v", got, tt.denied)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(err, %v) = false, want true", tt.is)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("error %q contains the password", err)
			}
			// Calls that fail fast say the same cause.
			if tt.unavailable {
				err := readState(st)
				var se *store.Error
				if !errors.As(err, &se) || (tt.cause != "" && !strings.Contains(se.Cause, tt.cause)) || strings.Contains(err.Error(), password) {
					t.Errorf("next call: got %v, want an error naming %q without the password", err, tt.cause)
				}
			}
		})
	}
}

// A TLS error keeps the certificate error for errors.As.
func TestErrorOfAnUnknownAuthorityIsACertificateError(t *testing.T) {
	t.Parallel()
	s := redistest.StartTLS(t, redistest.NewCerts(t))
	c := s.Client(t, func(o *redis.Options) { o.TLSConfig = &tls.Config{RootCAs: x509.NewCertPool()} })
	err := waitCause(t, causeStore(t, c), "TLS")
	var ue x509.UnknownAuthorityError
	var ve *tls.CertificateVerificationError
	if !errors.As(err, &ue) && !errors.As(err, &ve) {
		t.Errorf("got %v (%T), want it to wrap the certificate's verification error", err, errors.Unwrap(err))
	}
}

// A server loading a large dataset answers LOADING: the store's error says
// so and matches ErrUnavailable, and the store serves once loading ends.
func TestErrorWhileRedisLoads(t *testing.T) {
	t.Parallel()
	// A dataset of 20,000 keys, loaded slowly (key-load-delay, in
	// microseconds per key) with events processed often, so that the
	// server answers LOADING for about a second.
	src := redistest.Start(t)
	ctx := context.Background()
	admin := src.Client(t)
	pipe := admin.Pipeline()
	for i := 0; i < 20000; i++ {
		pipe.Set(ctx, "filler:"+strconv.Itoa(i), "x", 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("fill: %v", err)
	}
	if err := admin.Save(ctx).Err(); err != nil {
		t.Fatalf("SAVE: %v", err)
	}
	dir := t.TempDir()
	rdb, err := os.ReadFile(filepath.Join(src.Dir(), "dump.rdb"))
	if err != nil {
		t.Fatalf("read dump.rdb: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dump.rdb"), rdb, 0o600); err != nil {
		t.Fatal(err)
	}
	s := redistest.Start(t, "--dir", dir, "--key-load-delay", "100",
		"--loading-process-events-interval-bytes", "1024")
	c := s.Client(t)
	if err := c.Ping(ctx).Err(); err == nil || !strings.HasPrefix(err.Error(), "LOADING") {
		t.Skipf("the server finished loading before the test could see it (PING: %v)", err)
	}
	st := causeStore(t, c)
	err = readState(st)
	var se *store.Error
	if !errors.As(err, &se) || !strings.Contains(se.Cause, "loading") || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("call while loading: got %v, want an error naming the loading, matching ErrUnavailable", err)
	}
	deadline := time.Now().Add(causeWait * 3)
	for readState(st) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the store did not serve within %v of the end of loading: %v", causeWait*3, readState(st))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The classification of errors without a server: what go-redis and the
// network return, sorted.
func TestErrorsOfTheNetwork(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A server that accepts and never answers: every call times out.
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() })
		}
	}()
	t.Cleanup(func() { l.Close() })
	c := redis.NewClient(&redis.Options{Addr: l.Addr().String()})
	t.Cleanup(func() { _ = c.Close() })
	err = waitCause(t, causeStore(t, c), "timeout")
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "250ms") {
		t.Errorf("got %v, want a timeout of 250ms matching ErrUnavailable", err)
	}
}
