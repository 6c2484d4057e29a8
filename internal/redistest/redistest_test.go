package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestStartAnswers(t *testing.T) {
	t.Parallel()
	s := Start(t)
	if got, want := s.Addr(), fmt.Sprintf("127.0.0.1:%d", s.Port()); got != want {
		t.Fatalf("Addr() = %q, want %q", got, want)
	}
	c := s.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET k = %q, %v; want \"v\", nil", got, err)
	}
	cfg, err := c.ConfigGet(ctx, "save").Result()
	if err != nil {
		t.Fatalf("CONFIG GET save: %v", err)
	}
	if got := cfg["save"]; got != "" {
		t.Errorf("save = %q, want \"\" (no snapshots)", got)
	}
}

func TestStartArgsOverrideDefaults(t *testing.T) {
	t.Parallel()
	s := Start(t, "--maxmemory", "10mb")
	got, err := s.Client(t).ConfigGet(context.Background(), "maxmemory").Result()
	if err != nil {
		t.Fatalf("CONFIG GET maxmemory: %v", err)
	}
	if want := "10485760"; got["maxmemory"] != want {
		t.Errorf("maxmemory = %q, want %q", got["maxmemory"], want)
	}
}

func TestRestartKeepsPortLosesData(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := context.Background()
	if err := s.Client(t).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	port := s.Port()

	s.Restart()

	if got := s.Port(); got != port {
		t.Errorf("Port() after Restart = %d, want %d", got, port)
	}
	c := s.Client(t)
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET k after Restart: got error %v, want redis.Nil (data lost)", err)
	}
	if err := c.Set(ctx, "k2", "v", 0).Err(); err != nil {
		t.Errorf("SET after Restart: %v", err)
	}
}

func TestStopRefusesConnections(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := s.Client(t, func(o *redis.Options) { o.MaxRetries = -1 })
	s.Stop()
	err := c.Ping(context.Background()).Err()
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("PING after Stop: got error %v, want connection refused", err)
	}
	s.Stop() // a second Stop must do nothing
}

func TestFreezeTimesOutThawRecovers(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := s.Client(t, func(o *redis.Options) {
		o.ReadTimeout = 200 * time.Millisecond
		o.WriteTimeout = 200 * time.Millisecond
		o.MaxRetries = -1
	})
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING before Freeze: %v", err)
	}

	s.Freeze()
	err := c.Ping(ctx).Err()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("PING while frozen: got error %v, want a timeout", err)
	}

	s.Thaw()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Errorf("PING after Thaw: got error %v, want nil", err)
	}
}

func TestFreezeThenStop(t *testing.T) {
	t.Parallel()
	s := Start(t)
	s.Freeze()
	done := make(chan struct{})
	go func() {
		s.Stop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop of a frozen server did not return within 10s")
	}
}

func TestPauseHoldsCommands(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := s.Client(t, func(o *redis.Options) {
		o.ReadTimeout = 100 * time.Millisecond
		o.MaxRetries = -1
	})
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING before Pause: %v", err)
	}

	s.Pause(time.Second)
	err := c.Ping(ctx).Err()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("PING while paused: got error %v, want a timeout", err)
	}

	// The pause ends by itself; a patient client gets its answer.
	patient := s.Client(t, func(o *redis.Options) { o.ReadTimeout = 10 * time.Second })
	if err := patient.Ping(ctx).Err(); err != nil {
		t.Errorf("PING with a long timeout during Pause: got error %v, want nil", err)
	}
}

// recordTB records how a test was skipped or failed and ends the goroutine
// calling it, as testing.T does; everything else goes to the real test.
type recordTB struct {
	testing.TB
	mu     sync.Mutex
	skip   string
	fatal  string
	called bool
}

func (r *recordTB) Helper() {}

func (r *recordTB) Skip(args ...any) {
	r.mu.Lock()
	r.skip = fmt.Sprint(args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recordTB) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.fatal = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

// run calls f with r in a goroutine of its own and waits for it.
func (r *recordTB) run(f func(testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
		r.called = true
	}()
	<-done
}

func TestMissingRedisServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	starters := map[string]func(testing.TB){
		"Start":        func(tb testing.TB) { Start(tb) },
		"StartCluster": func(tb testing.TB) { StartCluster(tb, 3) },
	}
	for name, f := range starters {
		tests := []struct {
			require   string
			wantSkip  string
			wantFatal string
		}{
			{require: "", wantSkip: "redistest: redis-server not found on PATH; install it (apt-get install redis-server) or run make test"},
			{require: "0", wantSkip: "redistest: redis-server not found on PATH; install it"},
			{require: "1", wantFatal: "redistest: redis-server not found on PATH and BREAKWATER_REQUIRE_REDIS=1"},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%s=%q", name, RequireEnv, tt.require), func(t *testing.T) {
				t.Setenv(RequireEnv, tt.require)
				r := &recordTB{TB: t}
				r.run(f)
				if r.called {
					t.Fatalf("%s returned with redis-server missing; want it to skip or fail", name)
				}
				if !strings.HasPrefix(r.skip, tt.wantSkip) || (tt.wantSkip == "") != (r.skip == "") {
					t.Errorf("skip message = %q, want prefix %q", r.skip, tt.wantSkip)
				}
				if !strings.HasPrefix(r.fatal, tt.wantFatal) || (tt.wantFatal == "") != (r.fatal == "") {
					t.Errorf("fatal message = %q, want prefix %q", r.fatal, tt.wantFatal)
				}
			})
		}
	}
}

func TestLaunchReportsPortInUse(t *testing.T) {
	t.Parallel()
	bin := lookup(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s := &Server{tb: t, bin: bin, dir: t.TempDir(), port: l.Addr().(*net.TCPAddr).Port}
	err = s.launch()
	if !errors.Is(err, errAddrInUse) {
		t.Errorf("launch on a taken port: got error %v, want errAddrInUse", err)
	}
	s.Stop()
}
