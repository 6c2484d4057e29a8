package redistest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file holds the ways a Redis goes back in time: restored from an
// older snapshot (Save, RestartFrom) and failed over to a replica that
// lagged behind its master (StartReplica, Replica.Hold, Replica.Promote).

// admin returns a client of the server for the harness's own commands.
func (s *Server) admin() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, PoolSize: 1, DisableIdentity: true,
		TLSConfig: s.tlsConfig(), Password: s.password()})
}

// do runs one command on the server or fails the test.
func (s *Server) do(what string, args ...interface{}) interface{} {
	s.tb.Helper()
	c := s.admin()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	v, err := c.Do(ctx, args...).Result()
	if err != nil {
		s.tb.Fatalf("redistest: %s on %s: %v", what, s.Addr(), err)
	}
	return v
}

// Save makes the server write its dataset to disk (SAVE) and returns the
// path of a copy of that snapshot, for RestartFrom. The server needs no
// persistence settings for it.
func (s *Server) Save() string {
	s.tb.Helper()
	s.do("SAVE", "SAVE")
	f, err := os.CreateTemp(s.dir, "snapshot-*.rdb")
	if err == nil {
		f.Close()
		err = copyFile(filepath.Join(s.dir, "dump.rdb"), f.Name())
	}
	if err != nil {
		s.tb.Fatalf("redistest: save %s: %v", s.Addr(), err)
	}
	return f.Name()
}

// RestartFrom stops the server if it is running (as a crash would) and
// starts it again on the same port with the dataset of snapshot, a path
// that Save returned: Redis restored from an older backup.
func (s *Server) RestartFrom(snapshot string) {
	s.tb.Helper()
	s.Stop()
	if err := copyFile(snapshot, filepath.Join(s.dir, "dump.rdb")); err != nil {
		s.tb.Fatalf("redistest: restart %s from %s: %v", s.Addr(), snapshot, err)
	}
	s.relaunch()
}

// relaunch starts the stopped server again on its port.
func (s *Server) relaunch() {
	s.tb.Helper()
	// The port was just released by the server itself; it is only retried
	// for the short time the kernel may still hold it.
	var err error
	for attempt := 0; attempt < startAttempts; attempt++ {
		if err = s.launch(); err == nil || !errors.Is(err, errAddrInUse) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.tb.Fatalf("redistest: restart %s: %v", s.Addr(), err)
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

// Replica is a redis-server that replicates a master through a link the
// test controls: Hold makes it lag, Promote makes it a master that never
// learns what it missed.
type Replica struct {
	*Server
	master *Server
	link   *link
}

// StartReplica starts a redis-server replicating master (plain TCP only)
// and returns once it holds the master's dataset. It and its link are
// stopped when the test ends.
func StartReplica(tb testing.TB, master *Server) *Replica {
	tb.Helper()
	if master.certs != nil {
		tb.Fatalf("redistest: StartReplica: a TLS master is not supported")
	}
	r := &Replica{Server: Start(tb), master: master}
	l, err := newLink(master.Addr())
	if err != nil {
		tb.Fatalf("redistest: StartReplica: %v", err)
	}
	r.link = l
	tb.Cleanup(l.cut)
	// The first sync at once, not after the default 5s of waiting for
	// more replicas.
	master.do("CONFIG SET", "CONFIG", "SET", "repl-diskless-sync-delay", "0")
	host, port, _ := net.SplitHostPort(l.addr())
	r.do("REPLICAOF", "REPLICAOF", host, port)
	r.waitInfo("replication", "master_link_status:up")
	r.Sync()
	return r
}

// Sync returns once the replica has acknowledged everything the master
// wrote so far (WAIT on the master).
func (r *Replica) Sync() {
	r.tb.Helper()
	n, _ := r.master.do("WAIT", "WAIT", 1, readyTimeout.Milliseconds()).(int64)
	if n < 1 {
		r.tb.Fatalf("redistest: replica %s did not acknowledge master %s within %v", r.Addr(), r.master.Addr(), readyTimeout)
	}
}

// Hold makes the link hold back what the master sends from now on: the
// replica lags, holding only what it had (call Sync first to know what
// that is), while the master goes on.
func (r *Replica) Hold() { r.link.hold() }

// Promote cuts the link, losing what it held back, and makes the replica a
// master (REPLICAOF NO ONE), as a failover to a lagging replica does.
// It returns once the replica answers as a master.
func (r *Replica) Promote() {
	r.tb.Helper()
	r.link.cut()
	r.do("REPLICAOF NO ONE", "REPLICAOF", "NO", "ONE")
	r.waitInfo("replication", "role:master")
}

// waitInfo waits until the INFO section holds line.
func (s *Server) waitInfo(section, line string) {
	s.tb.Helper()
	c := s.admin()
	defer c.Close()
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		info, err := c.Info(ctx, section).Result()
		cancel()
		if err == nil && strings.Contains(info, line+"\r\n") {
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("redistest: %s: no %q in INFO %s within %v (%v)", s.Addr(), line, section, readyTimeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// link is a TCP proxy from a replica to its master whose master-to-replica
// direction can be held back.
type link struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cond  *sync.Cond
	held  bool
	done  bool
	conns []net.Conn
}

func newLink(target string) (*link, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("link to %s: %w", target, err)
	}
	l := &link{ln: ln, target: target}
	l.cond = sync.NewCond(&l.mu)
	go l.accept()
	return l, nil
}

func (l *link) addr() string { return l.ln.Addr().String() }

func (l *link) accept() {
	for {
		down, err := l.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", l.target)
		if err != nil {
			down.Close()
			continue
		}
		l.mu.Lock()
		if l.done {
			l.mu.Unlock()
			down.Close()
			up.Close()
			return
		}
		l.conns = append(l.conns, down, up)
		l.mu.Unlock()
		go func() { _, _ = io.Copy(up, down); up.Close() }() // replica to master: always
		go l.pump(down, up)
	}
}

// pump copies the master's stream to the replica, waiting while held.
func (l *link) pump(down, up net.Conn) {
	defer down.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			l.mu.Lock()
			for l.held && !l.done {
				l.cond.Wait()
			}
			done := l.done
			l.mu.Unlock()
			if done {
				return
			}
			if _, werr := down.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (l *link) hold() {
	l.mu.Lock()
	l.held = true
	l.mu.Unlock()
}

// cut closes the link for good; what it held back is lost.
func (l *link) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return
	}
	l.done = true
	l.cond.Broadcast()
	l.ln.Close()
	for _, c := range l.conns {
		c.Close()
	}
}
