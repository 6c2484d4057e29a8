package main

// The command against a real redis-server frozen with SIGSTOP: --timeout
// and an interrupt end it promptly, whatever the URL's read_timeout.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/internal/redistest"
)

// hangWithin bounds how long the command may take to give up on a frozen
// Redis: far above its 300ms --timeout (a loaded machine, -race), far below
// for ever.
const hangWithin = 5 * time.Second

// runFrozen runs the command in-process with ctx and returns its exit code
// and stderr; it fails the test if the command is still running after
// hangWithin, thawing srv to free it.
func runFrozen(t *testing.T, ctx context.Context, srv *redistest.Server, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	done := make(chan int, 1)
	t0 := time.Now()
	go func() { done <- run(ctx, args, &out, &errb, stableEnv()) }()
	select {
	case code := <-done:
		t.Logf("%q with Redis frozen: exit %d after %v: %s", args, code, time.Since(t0), strings.TrimSpace(errb.String()))
		return code, errb.String()
	case <-time.After(hangWithin):
		srv.Thaw()
		<-done
		t.Fatalf("%q with Redis frozen: still running after %v", args, hangWithin)
		return 0, ""
	}
}

func TestTimeoutWithRedisFrozen(t *testing.T) {
	srv := redistest.Start(t)
	fleet(t, srv.Client(t), "ops")
	srv.Freeze()
	t.Cleanup(srv.Thaw)
	for _, url := range []string{"redis://" + srv.Addr(), "redis://" + srv.Addr() + "?read_timeout=-1"} {
		for _, cmd := range []string{"status", "open"} {
			args := []string{"--redis", url, "--prefix", "ops", "--timeout", "300ms", cmd}
			if cmd == "open" {
				args = append(args, "payments")
			}
			code, errOut := runFrozen(t, context.Background(), srv, args...)
			if code != exitRedis || !strings.Contains(errOut, "cannot reach Redis") {
				t.Errorf("%q: exit %d, stderr %q; want exit %d (Redis unreachable)", args, code, errOut, exitRedis)
			}
		}
	}
	// An interrupt ends the context that main makes with signal.NotifyContext.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	args := []string{"--redis", "redis://" + srv.Addr() + "?read_timeout=-1", "--prefix", "ops", "--timeout", "1h", "status"}
	if code, errOut := runFrozen(t, ctx, srv, args...); code != exitError || !strings.Contains(errOut, "context canceled") {
		t.Errorf("%q interrupted: exit %d, stderr %q; want exit %d", args, code, errOut, exitError)
	}
}

// TestSignalWithRedisFrozen sends SIGINT and SIGTERM to the built command
// while it waits on a frozen Redis that never times out a read.
func TestSignalWithRedisFrozen(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGINT to send to a process on Windows")
	}
	srv := redistest.Start(t) // skips or fails first when redis-server is missing
	bin := binary(t)
	srv.Freeze()
	t.Cleanup(srv.Thaw)
	for _, sig := range []os.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			// The command reaches Redis through a proxy, which tells when it
			// has sent its first bytes: by then main handles signals, and the
			// command waits on the frozen Redis.
			addr, connected := proxy(t, srv.Addr())
			cmd := exec.Command(bin, "--redis", "redis://"+addr+"?read_timeout=-1", "--timeout", "1h", "status")
			var errb bytes.Buffer
			cmd.Stderr = &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-connected:
			case err := <-done:
				t.Fatalf("the command ended before it reached Redis: %v: %s", err, errb.String())
			case <-time.After(wait):
				_ = cmd.Process.Kill()
				t.Fatalf("the command did not reach Redis within %v", wait)
			}
			t0 := time.Now()
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != exitError {
					t.Errorf("after %v: %v (%v after the signal), stderr %q; want exit %d", sig, err, time.Since(t0), errb.String(), exitError)
				}
			case <-time.After(hangWithin):
				_ = cmd.Process.Kill()
				<-done
				t.Errorf("still running %v after %v, with Redis frozen", hangWithin, sig)
			}
		})
	}
}

// proxy forwards connections to addr and returns its own address and a
// channel closed once the first connection's first bytes are on their way
// to addr; it stops when the test ends.
func proxy(t *testing.T, addr string) (string, <-chan struct{}) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	connected := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", addr)
			if err != nil {
				_ = in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			wg.Add(2)
			go func() {
				defer wg.Done()
				// The first bytes the command sends (its handshake) reach
				// Redis before the channel closes: it then waits on Redis.
				buf := make([]byte, 32<<10)
				n, err := in.Read(buf)
				if n > 0 {
					_, _ = out.Write(buf[:n])
					once.Do(func() { close(connected) })
				}
				if err == nil {
					_, _ = io.Copy(out, in)
				}
				_ = out.Close()
			}()
			go func() { defer wg.Done(); _, _ = io.Copy(in, out); _ = in.Close() }()
		}
	}()
	return l.Addr().String(), connected
}
