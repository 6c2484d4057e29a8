package main

// The command against real redis-server processes (internal/redistest), a
// single node and a Cluster, holding breakers in known states. Outputs are
// compared with golden files in testdata (times and generations masked);
// go test ./cmd/breakwater -update rewrites them.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// wait bounds every wait for what should happen within milliseconds.
const wait = 10 * time.Second

func TestMain(m *testing.M) {
	redis.SetLogger(quiet{})
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// stableEnv is the env of golden tests: no terminal, volatile values masked.
func stableEnv() env {
	return env{getenv: func(string) string { return "" }, stable: true, now: time.Now}
}

// runCLI runs the command in-process.
func runCLI(t *testing.T, e env, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb, e)
	return out.String(), errb.String(), code
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// fleet puts breakers in known states under prefix, through the library
// as a fleet would, and returns the store.
func fleet(t *testing.T, c redis.UniversalClient, prefix string) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.New(c, store.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	mk := func(name, instance string, s breaker.Settings) *breaker.Breaker {
		s.Instance = instance
		b, err := breaker.New(name, st, s)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	calls := func(b *breaker.Breaker, errs ...error) {
		for _, e := range errs {
			p, err := b.Allow(ctx)
			if err != nil {
				t.Fatalf("%s: %v", b.Name(), err)
			}
			p.Done(ctx, e)
		}
		if err := b.Flush(ctx); err != nil {
			t.Fatalf("%s: flush: %v", b.Name(), err)
		}
	}
	boom := errors.New("boom")
	trip := breaker.Settings{ConsecutiveFailures: 3, OpenDuration: time.Hour}
	calls(mk("api:closed", "pod-1", trip), nil, nil, boom)
	calls(mk("api:open", "pod-2", trip), boom, boom, boom)
	if err := mk("db", "pod-3", trip).ForceOpen(ctx); err != nil {
		t.Fatal(err)
	}
	if err := mk("search", "pod-4", trip).Disable(ctx); err != nil {
		t.Fatal(err)
	}
	rate := breaker.Settings{ConsecutiveFailures: breaker.Off, FailureRate: 0.9, MinimumCalls: 100}
	calls(mk("payments", "pod-5", rate), nil, boom, nil, boom, nil)
	calls(mk("payments", "pod-6", rate), nil, boom, nil)
	half := mk("queue", "pod-7", trip)
	if err := half.ForceOpenFor(ctx, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for {
		p, err := half.Allow(ctx)
		if err == nil {
			t.Cleanup(func() { p.Done(ctx, nil) })
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue: no probe within %v: %v", wait, err)
		}
		<-time.After(time.Millisecond)
	}
	return st
}

// checkJSON checks that status --json printed the six breakers as JSON
// (stable mode masks the volatile values).
func checkJSON(t *testing.T, out string) {
	t.Helper()
	var rows []map[string]interface{}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if len(rows) != 6 {
		t.Fatalf("status --json: got %d rows, want 6", len(rows))
	}
}

func TestStatusSingleNode(t *testing.T) {
	srv := redistest.Start(t)
	fleet(t, srv.Client(t), "ops")
	testStatus(t, "redis://"+srv.Addr())
}

func TestStatusCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	fleet(t, cl.Client(t), "ops")
	// The same golden files: a Cluster shows what a single node shows.
	testStatus(t, "redis+cluster://"+strings.Join(cl.Addrs(), ","))
	testStatus(t, strings.Join(cl.Addrs(), ","))
}

func testStatus(t *testing.T, url string) {
	t.Helper()
	for _, tt := range []struct {
		golden string
		args   []string
	}{
		{"status.txt", []string{"status"}},
		{"status-api.txt", []string{"status", "api:*"}},
		{"status-none.txt", []string{"status", "nothing*"}},
		{"status.json", []string{"status", "--json"}},
	} {
		args := append([]string{"--redis", url, "--prefix", "ops"}, tt.args...)
		out, errOut, code := runCLI(t, stableEnv(), args...)
		if code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, errOut)
		}
		if tt.golden == "status.json" {
			checkJSON(t, out)
		}
		golden(t, tt.golden, out)
	}
}

func TestForceCommands(t *testing.T) {
	srv := redistest.Start(t)
	fleet(t, srv.Client(t), "ops")
	url := "redis://" + srv.Addr()
	var transcript strings.Builder
	for _, args := range [][]string{
		{"open", "api:closed", "--as", "ops-alice"},
		{"open", "api:closed", "--as", "ops-alice"},
		{"close", "api:closed", "--as", "ops-alice"},
		{"disable", "api:open", "--as", "ops-bob"},
		{"reset", "api:open", "--as", "ops-bob"},
		{"open", "search", "--for", "90s", "--as", "ops-bob"},
		{"open", "new-one", "--create", "--as", "ops-carol"},
	} {
		all := append([]string{"--redis", url, "--prefix", "ops"}, args...)
		out, errOut, code := runCLI(t, stableEnv(), all...)
		fmt.Fprintf(&transcript, "$ breakwater %s\n%s%s(exit %d)\n", strings.Join(args, " "), out, errOut, code)
	}
	out, _, _ := runCLI(t, stableEnv(), "--redis", url, "--prefix", "ops", "status")
	transcript.WriteString("$ breakwater status\n" + out)
	golden(t, "force.txt", transcript.String())

	// The flags given reached the store: the breaker opened for 90s.
	st, err := store.New(srv.Client(t), store.Options{Prefix: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	sts, err := st.Inspect(context.Background(), store.InspectOptions{}, "search")
	if err != nil {
		t.Fatal(err)
	}
	if s := sts[0]; s.State != breaker.Open || s.NextProbeIn <= 80*time.Second || s.NextProbeIn > 90*time.Second || s.ChangedBy != "ops-bob" {
		t.Fatalf("search after open --for 90s: got %v, next probe in %v, by %q", s.State, s.NextProbeIn, s.ChangedBy)
	}
}

func TestExitCodes(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	if err := srv.Client(t).ConfigSet(ctx, "requirepass", "s3cr3t-pw").Err(); err != nil {
		t.Fatal(err)
	}
	c := srv.Client(t, func(o *redis.Options) { o.Password = "s3cr3t-pw" })
	st := fleet(t, c, "ops")
	if err := c.HSet(ctx, st.Keys("db")[0], "gen", "many").Err(); err != nil {
		t.Fatal(err)
	}
	good := "redis://:s3cr3t-pw@" + srv.Addr()
	dead := "redis://:s3cr3t-pw@127.0.0.1:1"
	tests := []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"no command", []string{"--redis", good}, exitUsage, "no command"},
		{"unknown command", []string{"--redis", good, "frob"}, exitUsage, `unknown command "frob"`},
		{"unknown flag", []string{"--redis", good, "status", "--frob"}, exitUsage, "frob"},
		{"extra argument", []string{"--redis", good, "close", "a", "b"}, exitUsage, `unexpected argument "b"`},
		{"missing argument", []string{"--redis", good, "close"}, exitUsage, "want NAME"},
		{"bad url", []string{"--redis", "redis://:s3cr3t-pw@host:port:x", "status"}, exitUsage, "bad Redis URL"},
		{"bad scheme", []string{"--redis", "http://:s3cr3t-pw@h:1", "status"}, exitUsage, "unknown scheme"},
		{"bad duration", []string{"--redis", good, "open", "x", "--for", "soon"}, exitUsage, `"soon" for flag -for`},
		{"unreachable", []string{"--redis", dead, "status"}, exitRedis, "cannot reach Redis at redis://:xxxxx@127.0.0.1:1"},
		{"wrong password", []string{"--redis", "redis://:wrong@" + srv.Addr(), "status"}, exitRedis, "cannot reach Redis"},
		{"unknown breaker", []string{"--redis", good, "--prefix", "ops", "open", "nope"}, exitUnknown, `unknown breaker "nope"`},
		{"bad pattern", []string{"--redis", good, "--prefix", "ops", "status", "api[*"}, exitPattern, "bad pattern"},
		{"bad watch pattern", []string{"--redis", good, "--prefix", "ops", "watch", "{x}"}, exitPattern, "bad pattern"},
		{"corrupt", []string{"--redis", good, "--prefix", "ops", "status"}, exitCorrupt, `field gen is "many"`},
		{"corrupt close", []string{"--redis", good, "--prefix", "ops", "close", "db"}, exitCorrupt, "reset repairs it"},
		{"help", []string{"-h"}, exitOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := stableEnv()
			e.getenv = func(k string) string {
				if k == "REDIS_URL" {
					return good
				}
				return ""
			}
			out, errOut, code := runCLI(t, e, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("%q: got exit %d, stderr %q; want exit %d, stderr with %q", tt.args, code, errOut, tt.code, tt.want)
			}
			if strings.Contains(out+errOut, "s3cr3t-pw") {
				t.Errorf("%q: the password was printed:\n%s%s", tt.args, out, errOut)
			}
		})
	}

	// The corrupt breaker is listed as such beside the others.
	out, _, code := runCLI(t, stableEnv(), "--redis", good, "--prefix", "ops", "status")
	if code != exitCorrupt || !regexp.MustCompile(`(?m)^db +corrupt`).MatchString(out) || !strings.Contains(out, "payments") {
		t.Errorf("status with a corrupt breaker: exit %d:\n%s", code, out)
	}
	// Reset repairs it.
	if _, errOut, code := runCLI(t, stableEnv(), "--redis", good, "--prefix", "ops", "reset", "db"); code != 0 {
		t.Fatalf("reset db: exit %d: %s", code, errOut)
	}
	if _, errOut, code := runCLI(t, stableEnv(), "--redis", good, "--prefix", "ops", "status"); code != 0 {
		t.Fatalf("status after reset: exit %d: %s", code, errOut)
	}
	// REDIS_URL is used without --redis.
	e := stableEnv()
	e.getenv = func(k string) string {
		if k == "REDIS_URL" {
			return good
		}
		return ""
	}
	if _, errOut, code := runCLI(t, e, "--prefix", "ops", "status"); code != 0 {
		t.Fatalf("status with REDIS_URL: exit %d: %s", code, errOut)
	}
}

// lines collects what a writer receives, line by line, with the time each
// line arrived.
type lines struct {
	mu   sync.Mutex
	buf  []byte
	got  []line
	more chan struct{}
}

type line struct {
	at   time.Time
	text string
}

func newLines() *lines { return &lines{more: make(chan struct{}, 1)} }

func (l *lines) Write(p []byte) (int, error) {
	now := time.Now()
	l.mu.Lock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.got = append(l.got, line{at: now, text: string(l.buf[:i])})
		l.buf = l.buf[i+1:]
	}
	l.mu.Unlock()
	select {
	case l.more <- struct{}{}:
	default:
	}
	return len(p), nil
}

// await returns the first line from index from on that contains s.
func (l *lines) await(t *testing.T, from int, s string) (line, int) {
	t.Helper()
	deadline := time.After(wait)
	for {
		l.mu.Lock()
		for i := from; i < len(l.got); i++ {
			if strings.Contains(l.got[i].text, s) {
				ln := l.got[i]
				l.mu.Unlock()
				return ln, i + 1
			}
		}
		all := make([]string, 0, len(l.got))
		for _, g := range l.got {
			all = append(all, g.text)
		}
		l.mu.Unlock()
		select {
		case <-l.more:
		case <-deadline:
			t.Fatalf("no line with %q within %v; got:\n%s", s, wait, strings.Join(all, "\n"))
		}
	}
}

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// binary builds the command once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		var err error
		if binDir, err = os.MkdirTemp("", "breakwater-cmd-test-"); err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(binDir, "breakwater")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// TestWatch runs watch in-process and makes transitions from another
// process (the built command), measuring how long each takes to be printed
// after Redis recorded it; the median must stay under 100ms. Then Redis
// restarts, and watch says so and keeps printing.
func TestWatch(t *testing.T) {
	bin := binary(t)
	srv := redistest.Start(t)
	instances := fleet(t, srv.Client(t), "ops")
	url := "redis://" + srv.Addr()
	st, err := store.New(srv.Client(t), store.Options{Prefix: "ops"})
	if err != nil {
		t.Fatal(err)
	}

	stdout, stderr := newLines(), newLines()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	e := env{getenv: func(string) string { return "" }, now: time.Now,
		terminal: func(w io.Writer) bool { return w == io.Writer(stdout) }}
	go func() {
		done <- run(ctx, []string{"--redis", url, "--prefix", "ops", "watch", "api:*"}, stdout, stderr, e)
	}()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("watch: exit %d", code)
			}
		case <-time.After(wait):
			t.Errorf("watch did not stop within %v of its context's end", wait)
		}
	}()
	stderr.await(t, 0, "watching breakers matching \"api:*\"")

	other := func(args ...string) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"--redis", url, "--prefix", "ops"}, append(args, "--as", "ops-alice")...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("breakwater %q: %v\n%s", args, err, out)
		}
	}
	var lat []time.Duration
	next := 0
	for i := 0; i < 6; i++ {
		cmd, state := "open", "forced-open"
		if i%2 == 1 {
			cmd, state = "close", "closed"
		}
		other(cmd, "api:open")
		ln, n := stdout.await(t, next, "api:open")
		next = n
		if !strings.Contains(ln.text, "-> "+state) || !strings.Contains(ln.text, "by ops-alice") {
			t.Fatalf("watch printed %q, want the transition to %s by ops-alice", ln.text, state)
		}
		// Coloured: stdout is a terminal here.
		if c := "\x1b[" + stateColor(state) + "m"; !strings.Contains(ln.text, c) {
			t.Errorf("watch on a terminal printed %q without the colour of %s", ln.text, state)
		}
		sts, err := st.Inspect(context.Background(), store.InspectOptions{}, "api:open")
		if err != nil {
			t.Fatal(err)
		}
		// Redis runs on this machine: its clock is ours.
		lat = append(lat, ln.at.Sub(sts[0].ChangedAt))
	}
	// A breaker the pattern does not match is not printed.
	other("disable", "db")
	other("open", "api:closed")
	if ln, _ := stdout.await(t, next, "api:closed"); strings.Contains(ln.text, "db") {
		t.Fatalf("watch printed %q for a breaker outside its pattern", ln.text)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	median := lat[len(lat)/2]
	t.Logf("transition to watch's line: median %v, all %v", median, lat)
	if median >= 100*time.Millisecond {
		t.Errorf("watch printed transitions a median %v after Redis recorded them, want < 100ms (all: %v)", median, lat)
	}

	// Redis restarts (empty): watch says so, catches up, and goes on. (The
	// fleet's instances would start their breakers anew as soon as they
	// read the empty Redis, racing watch's own look: they stop first.)
	if err := instances.Close(); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	_, n := stderr.await(t, 0, "lost")
	_, n = stderr.await(t, n, "reconnected to "+url)
	if ln, _ := stderr.await(t, n, "gone while disconnected"); !strings.Contains(ln.text, `"api:`) {
		t.Errorf("after an empty restart, watch said %q, want the breakers that are gone named", ln.text)
	}
	other("open", "api:again", "--create")
	if ln, _ := stdout.await(t, 0, "api:again"); !strings.Contains(ln.text, "-> forced-open") {
		t.Fatalf("after the restart, watch printed %q", ln.text)
	}
}
