package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// requireEnv names the environment variable that turns a missing
// redis-server from a skipped benchmark into a failed one when set to "1".
const requireEnv = "BREAKWATER_REQUIRE_REDIS"

const (
	startAttempts = 5                      // new ports to try when one was taken meanwhile
	readyTimeout  = 15 * time.Second       // wait for a started server to answer
	pollInterval  = 10 * time.Millisecond  // pause between two readiness probes
	probeTimeout  = 250 * time.Millisecond // bound of one readiness probe
)

// server is a redis-server child process, killed and reaped when the test
// or benchmark that started it ends.
type server struct {
	addr  string
	admin *redis.Client // for INFO; its commands are not counted
}

// busy returns the time redis-server has spent executing commands since it
// started, in microseconds: the sum of usec over INFO commandstats.
func (s *server) busy(tb testing.TB) int64 {
	tb.Helper()
	info, err := s.admin.Info(context.Background(), "commandstats").Result()
	if err != nil {
		tb.Fatalf("bench: INFO commandstats: %v", err)
	}
	var total int64
	for _, line := range strings.Split(info, "\n") {
		// cmdstat_get:calls=4000,usec=3047,usec_per_call=0.76,...
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, field := range strings.Split(stats, ",") {
			if v, ok := strings.CutPrefix(field, "usec="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					tb.Fatalf("bench: INFO commandstats: %q: %v", line, err)
				}
				total += n
			}
		}
	}
	return total
}

// scripts returns how many script calls (EVALSHA and EVAL) redis-server has
// run since it started and the time they took, in microseconds, the
// commands they called included (INFO commandstats).
func (s *server) scripts(tb testing.TB) (calls, usec int64) {
	tb.Helper()
	info, err := s.admin.Info(context.Background(), "commandstats").Result()
	if err != nil {
		tb.Fatalf("bench: INFO commandstats: %v", err)
	}
	for _, line := range strings.Split(info, "\n") {
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		if name != "cmdstat_evalsha" && name != "cmdstat_eval" || !ok {
			continue
		}
		for _, field := range strings.Split(stats, ",") {
			k, v, _ := strings.Cut(field, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "calls":
				calls += n
			case "usec":
				usec += n
			}
		}
	}
	return calls, usec
}

// startRedis starts redis-server on a free port of 127.0.0.1, without
// persistence, and returns once it answers. It skips tb when redis-server
// is not on PATH, or fails it when BREAKWATER_REQUIRE_REDIS is "1".
func startRedis(tb testing.TB) *server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(requireEnv) == "1" {
			tb.Fatalf("bench: redis-server not found on PATH and %s=1: %v", requireEnv, err)
		}
		tb.Skip("bench: redis-server not found on PATH; install it (apt-get install redis-server) or run make bench")
	}
	dir := tb.TempDir()
	for attempt := 1; ; attempt++ {
		addr, err := launch(tb, bin, dir)
		if err == nil {
			admin := redis.NewClient(&redis.Options{Addr: addr})
			tb.Cleanup(func() { _ = admin.Close() })
			return &server{addr: addr, admin: admin}
		}
		if attempt == startAttempts || !strings.Contains(err.Error(), "Address already in use") {
			tb.Fatalf("bench: start redis-server: %v", err)
		}
	}
}

// launch runs redis-server on a port that was free a moment ago and waits
// until that very process answers.
func launch(tb testing.TB, bin, dir string) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	logPath := filepath.Join(dir, "redis.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--daemonize", "no", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", "")
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	logFile.Close()
	if err != nil {
		return "", err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		<-done
	}
	if err := waitReady(addr, cmd.Process.Pid, done); err != nil {
		stop()
		log, _ := os.ReadFile(logPath)
		return "", fmt.Errorf("%w\nredis-server log:\n%s", err, log)
	}
	tb.Cleanup(stop)
	return addr, nil
}

// waitReady polls addr until it answers PING and INFO names pid as the
// server's process, so that another server holding the port is never
// mistaken for ours; done is closed when the process has exited.
func waitReady(addr string, pid int, done <-chan struct{}) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1, DisableIdentity: true})
	defer c.Close()
	want := "process_id:" + strconv.Itoa(pid) + "\r\n"
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		err := c.Ping(ctx).Err()
		var info string
		if err == nil {
			info, err = c.Info(ctx, "server").Result()
		}
		cancel()
		switch {
		case err == nil && strings.Contains(info, want):
			return nil
		case err == nil:
			last = fmt.Errorf("%s is answered by another process", addr)
		default:
			last = err
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server exited before answering on %s", addr)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer on %s within %v: %w", addr, readyTimeout, last)
		}
	}
}
