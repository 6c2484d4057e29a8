package redistest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RequireEnv names the environment variable that turns a missing
// redis-server from a skipped test into a failed one when set to "1".
const RequireEnv = "BREAKWATER_REQUIRE_REDIS"

const (
	// startAttempts bounds how often a start is retried when the chosen port
	// turns out to be taken by the time redis-server binds it.
	startAttempts = 5
	// readyTimeout bounds the wait for a started server to answer.
	readyTimeout = 15 * time.Second
	// pollInterval is the pause between two readiness probes.
	pollInterval = 10 * time.Millisecond
	// probeTimeout bounds one readiness probe.
	probeTimeout = 250 * time.Millisecond
	// logTail is how much of a server's log is reported on failure.
	logTail = 4096
)

// Server is a redis-server child process owned by one test. Its methods are
// safe for concurrent use; Start and Restart report failures with
// testing.TB.Fatal and so must be called from the test's goroutine.
type Server struct {
	tb      testing.TB
	bin     string
	dir     string
	args    []string
	port    int
	busPort int    // cluster bus port; 0 for a standalone server
	certs   *Certs // TLS only (StartTLS); nil for plain TCP
	conf    string // a sentinel's configuration file; "" for a server

	mu     sync.Mutex
	proc   *process
	frozen bool
}

// process is one run of redis-server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd.Wait has returned
}

// Start starts a redis-server child process listening on a free port of
// 127.0.0.1 and returns once it answers. Extra args are appended to the
// command line (for example "--maxmemory", "10mb") and override the
// defaults: no daemon, no RDB snapshots, no AOF, a private temporary
// directory. The server is killed and reaped when the test ends.
//
// Start skips the test when redis-server is not on PATH, or fails it when
// the environment variable BREAKWATER_REQUIRE_REDIS is "1".
func Start(tb testing.TB, args ...string) *Server {
	tb.Helper()
	bin := lookup(tb)
	return start(tb, bin, false, args)
}

// lookup finds redis-server on PATH, or skips or fails the test.
func lookup(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err == nil {
		return bin
	}
	if os.Getenv(RequireEnv) == "1" {
		tb.Fatalf("redistest: redis-server not found on PATH and %s=1: %v", RequireEnv, err)
	}
	tb.Skip("redistest: redis-server not found on PATH; install it (apt-get install redis-server) or run make test")
	return ""
}

// start creates the server's directory, picks its ports and launches it,
// retrying with new ports when one was taken in the meantime.
func start(tb testing.TB, bin string, cluster bool, args []string) *Server {
	tb.Helper()
	return startWith(tb, bin, cluster, nil, args)
}

// startWith is start, with TLS when certs is not nil.
func startWith(tb testing.TB, bin string, cluster bool, certs *Certs, args []string) *Server {
	tb.Helper()
	s := &Server{
		tb:    tb,
		bin:   bin,
		dir:   tb.TempDir(),
		args:  append([]string(nil), args...),
		certs: certs,
	}
	tb.Cleanup(func() {
		s.Stop()
		if tb.Failed() {
			s.logTail()
		}
	})
	var err error
	for attempt := 0; attempt < startAttempts; attempt++ {
		if s.port, err = freePort(); err != nil {
			break
		}
		if cluster {
			if s.busPort, err = freePort(); err != nil {
				break
			}
		}
		if err = s.launch(); err == nil || !errors.Is(err, errAddrInUse) {
			break
		}
	}
	if err != nil {
		tb.Fatalf("redistest: start redis-server: %v", err)
	}
	return s
}

// errAddrInUse reports that redis-server could not bind its port.
var errAddrInUse = errors.New("address already in use")

// freePort returns a port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// commandLine returns redis-server's arguments for the server's ports.
func (s *Server) commandLine() []string {
	if s.conf != "" {
		return append([]string{s.conf, "--sentinel",
			"--port", strconv.Itoa(s.port),
			"--bind", "127.0.0.1",
			"--daemonize", "no",
			"--dir", s.dir,
			"--logfile", "",
		}, s.args...)
	}
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--daemonize", "no",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--logfile", "",
	}
	if s.busPort != 0 {
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(s.busPort),
			"--cluster-node-timeout", "2000",
		)
	}
	if s.certs != nil {
		args = append(args, tlsArgs(s.certs, s.port)...)
	}
	return append(args, s.args...)
}

// launch starts redis-server on the server's ports and waits until it
// answers. An error wraps errAddrInUse when a port was taken.
func (s *Server) launch() error {
	logPath := filepath.Join(s.dir, "redis.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, s.commandLine()...)
	cmd.Dir = s.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	logFile.Close()
	if err != nil {
		return err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()

	if err := waitReady(p, s.Addr(), s.tlsConfig(), s.password()); err != nil {
		_ = cmd.Process.Kill()
		<-p.done
		log := s.readLog()
		if bytes.Contains(log, []byte("Address already in use")) {
			err = fmt.Errorf("port %d or %d: %w", s.port, s.busPort, errAddrInUse)
		}
		return fmt.Errorf("%w\nredis-server log:\n%s", err, tail(log))
	}

	s.mu.Lock()
	s.proc = p
	s.frozen = false
	s.mu.Unlock()
	return nil
}

// waitReady polls addr until the redis-server run by p answers INFO with its
// own process id, so that another server that happens to hold the port is
// never mistaken for it.
func waitReady(p *process, addr string, tlsConfig *tls.Config, password string) error {
	c := redis.NewClient(&redis.Options{
		Addr:                  addr,
		MaxRetries:            -1,
		PoolSize:              1,
		DisableIdentity:       true,
		ContextTimeoutEnabled: true,
		TLSConfig:             tlsConfig,
		Password:              password,
	})
	defer c.Close()
	want := "process_id:" + strconv.Itoa(p.cmd.Process.Pid)
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last error
	for {
		select {
		case <-p.done:
			return fmt.Errorf("redis-server exited before answering on %s: %v", addr, p.cmd.ProcessState)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		info, err := c.Info(ctx, "server").Result()
		cancel()
		switch {
		case err == nil && strings.Contains(info, want+"\r\n"):
			return nil
		case err == nil:
			last = fmt.Errorf("%s is answered by another process", addr)
		default:
			last = err
		}
		select {
		case <-p.done:
			return fmt.Errorf("redis-server exited before answering on %s: %v", addr, p.cmd.ProcessState)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer on %s within %v: %w", addr, readyTimeout, last)
		}
	}
}

// tlsConfig returns the configuration of a client of the server: nil for
// plain TCP.
func (s *Server) tlsConfig() *tls.Config {
	if s.certs == nil {
		return nil
	}
	return s.certs.ClientConfig()
}

// running reports whether the server's process runs (it may be frozen).
func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// password returns the value of a --requirepass argument, or "".
func (s *Server) password() string {
	pw := ""
	for i := 0; i+1 < len(s.args); i++ {
		if s.args[i] == "--requirepass" {
			pw = s.args[i+1]
		}
	}
	return pw
}

// Dir returns the server's working directory, where it would write
// dump.rdb; it stays the same across Restart.
func (s *Server) Dir() string {
	return s.dir
}

// Addr returns the server's address, "127.0.0.1:<port>".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Port returns the server's TCP port. It stays the same across Restart.
func (s *Server) Port() int {
	return s.port
}

// Client returns a client for the server, closed when the test ends. The
// options start from go-redis's defaults with Addr set (and TLSConfig, for
// a server of StartTLS); opts may change them (timeouts, retries, protocol).
func (s *Server) Client(tb testing.TB, opts ...func(*redis.Options)) *redis.Client {
	tb.Helper()
	o := &redis.Options{Addr: s.Addr(), TLSConfig: s.tlsConfig()}
	for _, opt := range opts {
		opt(o)
	}
	c := redis.NewClient(o)
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop kills the server (as a crash would: no shutdown, no save) and reaps
// the process. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.frozen = false
	s.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Restart stops the server if it is running and starts a new one on the same
// port with empty data, as when Redis restarts. A cluster node keeps its
// nodes.conf, so it comes back with its slots but without its keys.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	for _, name := range []string{"dump.rdb", "appendonlydir"} {
		if err := os.RemoveAll(filepath.Join(s.dir, name)); err != nil {
			s.tb.Fatalf("redistest: restart %s: %v", s.Addr(), err)
		}
	}
	s.relaunch()
}

// Freeze stops the server process with SIGSTOP: connections still open and
// commands are accepted by the kernel, but nothing is answered, so every
// call runs into its timeout. Thaw resumes it; Stop, Restart and the end
// of the test kill a frozen server as they would a running one. On systems without SIGSTOP, Freeze skips the test.
func (s *Server) Freeze() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		s.tb.Errorf("redistest: freeze %s: server is not running", s.Addr())
		return
	}
	if !canFreeze {
		s.tb.Skip("redistest: Freeze needs SIGSTOP, which this system does not have")
	}
	if err := freeze(s.proc.cmd.Process); err != nil {
		s.tb.Errorf("redistest: freeze %s: %v", s.Addr(), err)
		return
	}
	s.frozen = true
}

// Thaw resumes a server stopped by Freeze. Thawing a server that is not
// frozen does nothing. Thaw may be called from any goroutine.
func (s *Server) Thaw() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || !s.frozen {
		return
	}
	if err := thaw(s.proc.cmd.Process); err != nil {
		s.tb.Errorf("redistest: thaw %s: %v", s.Addr(), err)
		return
	}
	s.frozen = false
}

// Pause makes the server hold every client command for d with
// CLIENT PAUSE ALL, then carry on by itself: a slow Redis rather than a dead
// one. Pause returns once the pause has begun.
func (s *Server) Pause(d time.Duration) {
	s.tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, PoolSize: 1, DisableIdentity: true,
		TLSConfig: s.tlsConfig(), Password: s.password()})
	defer c.Close()
	ms := d.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	if err := c.Do(context.Background(), "CLIENT", "PAUSE", ms, "ALL").Err(); err != nil {
		s.tb.Errorf("redistest: pause %s: %v", s.Addr(), err)
	}
}

// readLog returns the server's log, or a note saying why it is missing.
func (s *Server) readLog() []byte {
	b, err := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return []byte(err.Error())
	}
	return b
}

// logTail reports the end of the server's log to the test.
func (s *Server) logTail() {
	s.tb.Logf("redistest: log of redis-server on %s:\n%s", s.Addr(), tail(s.readLog()))
}

// tail returns at most the last logTail bytes of b.
func tail(b []byte) string {
	if len(b) > logTail {
		b = b[len(b)-logTail:]
	}
	return string(b)
}
