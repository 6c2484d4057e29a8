package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/internal/redistest"
)

// startSentinel starts a redis-server in Sentinel mode as a child process,
// monitoring master as "mymaster", and returns its address once it knows
// the master. It is killed and reaped when the test ends.
func startSentinel(t *testing.T, master string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not on PATH") // redistest.Start has already skipped or failed
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	host, mport, _ := net.SplitHostPort(master)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	cfg := fmt.Sprintf("port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\nlogfile \"\"\nsentinel monitor mymaster %s %s 1\n", port, dir, host, mport)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	cmd.Dir = dir
	log, err := os.Create(filepath.Join(dir, "sentinel.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(wait)
	for {
		got, err := c.GetMasterAddrByName(context.Background(), "mymaster").Result()
		if err == nil && len(got) == 2 && net.JoinHostPort(got[0], got[1]) == master {
			return addr
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "sentinel.log"))
			t.Fatalf("sentinel on %s does not know the master within %v: %v %v\n%s", addr, wait, got, err, b)
		}
		<-time.After(20 * time.Millisecond)
	}
}

func TestStatusSentinel(t *testing.T) {
	srv := redistest.Start(t)
	fleet(t, srv.Client(t), "ops")
	s := startSentinel(t, srv.Addr())
	// The same golden files: through Sentinel, the master shows the same.
	testStatus(t, "redis+sentinel://"+s+"?master_name=mymaster")
	out, errOut, code := runCLI(t, stableEnv(), "--redis", "redis+sentinel://"+s+"?master_name=mymaster", "--prefix", "ops", "close", "db", "--as", "ops-alice")
	if code != 0 || out != "db: forced-open -> closed (generation <gen> -> <gen>)\n" {
		t.Fatalf("close through Sentinel: exit %d, %q %q", code, out, errOut)
	}
}
