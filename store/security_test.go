package store_test

// Breakwater over TLS with an ACL user allowed only what it needs, against
// a real redis-server that the test starts with certificates it generates.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

// aclCommands are the commands Breakwater sends (the scripts, with EVAL
// when Redis lost them; SUBSCRIBE and PING for the announcements; TYPE to
// name a key of the wrong type in an error) and the ones its scripts call
// (Redis checks those against the user's ACL too). README's "Security: TLS
// and ACL" gives the same rule.
var aclCommands = []string{
	"evalsha", "eval", "subscribe", "ping", "type",
	"time", "publish", "del", "pexpire", "hget", "hmget", "hset", "hlen", "hgetall", "hdel",
	"zadd", "zcard", "zcount", "zrange", "zrem", "zremrangebyscore",
}

// aclRule returns the ACL SETUSER arguments of a user who may use the
// breakers and retry budgets of prefix and nothing else.
func aclRule(user, password, prefix string) []interface{} {
	args := []interface{}{"ACL", "SETUSER", user, "reset", "on", ">" + password,
		"~{" + prefix + ":*", "&" + prefix + ":*", "-@all"}
	for _, c := range aclCommands {
		args = append(args, "+"+c)
	}
	return args
}

// The rule must name every command the scripts call.
func TestACLRuleCoversTheScripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "lua", "*.lua"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts found in ../lua: %v", err)
	}
	allowed := map[string]bool{}
	for _, c := range aclCommands {
		allowed[c] = true
	}
	call := regexp.MustCompile(`redis\.p?call\s*[(,]\s*['"]([A-Za-z]+)['"]`)
	var missing []string
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range call.FindAllStringSubmatch(string(src), -1) {
			if c := strings.ToLower(m[1]); !allowed[c] {
				missing = append(missing, c+" ("+filepath.Base(f)+")")
				allowed[c] = true
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the ACL rule lacks commands the scripts call: %s; add them to aclCommands and to README", strings.Join(missing, ", "))
	}
}

func TestBreakerOverTLSWithAMinimalACLUser(t *testing.T) {
	t.Parallel()
	const (
		prefix   = "svc"
		user     = "breakwater"
		password = "acl-Pa55word"
	)
	certs := redistest.NewCerts(t)
	srv := redistest.StartTLS(t, certs)
	ctx := context.Background()
	admin := srv.Client(t)
	if err := admin.Do(ctx, aclRule(user, password, prefix)...).Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	if err := admin.Do(ctx, "ACL", "LOG", "RESET").Err(); err != nil {
		t.Fatalf("ACL LOG RESET: %v", err)
	}
	client := func() *redis.Client {
		return srv.Client(t, func(o *redis.Options) {
			o.Username, o.Password = user, password
			o.TLSConfig = certs.ClientConfig() // verifies the server's certificate
		})
	}
	newBreaker := func(instance string) (*breaker.Breaker, chan breaker.Event) {
		st, err := store.New(client(), store.Options{Prefix: prefix, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatalf("store.New: %v", err)
		}
		t.Cleanup(func() { _ = st.Close() })
		b, err := breaker.New("payments", st, breaker.Settings{ConsecutiveFailures: 3, Instance: instance,
			OpenDuration: time.Minute})
		if err != nil {
			t.Fatalf("breaker.New: %v", err)
		}
		t.Cleanup(func() { _ = b.Close() })
		events := make(chan breaker.Event, 64)
		b.Listen(func(e breaker.Event) { events <- e })
		return b, events
	}
	a, aEvents := newBreaker("a")
	b, bEvents := newBreaker("b")

	// b reads the state first, so that it subscribes and follows it.
	if _, err := b.Snapshot(ctx); err != nil {
		t.Fatalf("Snapshot over TLS as %s: %v", user, err)
	}
	waitSubscribed(t, admin, prefix)
	boom := errors.New("boom")
	for i := 0; i < 3; i++ {
		p, err := a.Allow(ctx)
		if err != nil {
			t.Fatalf("Allow %d: %v", i, err)
		}
		p.Done(ctx, boom)
	}
	for _, w := range []struct {
		who    string
		events chan breaker.Event
	}{{"a", aEvents}, {"b", bEvents}} {
		if e := waitEvent(t, w.events, breaker.StateChanged); e.To != breaker.Open {
			t.Errorf("instance %s: got %v -> %v, want the breaker open", w.who, e.From, e.To)
		}
	}
	for _, e := range drain(aEvents, bEvents) {
		if e.Kind == breaker.StoreUnavailable {
			t.Errorf("store unavailable over TLS as %s: %v", user, e.Err)
		}
	}
	if err := a.Reset(ctx); err != nil {
		t.Errorf("Reset as %s: %v", user, err)
	}

	// The retry budget works with the same user.
	budget, err := store.NewRetryBudget(client(), "payments", store.BudgetOptions{Prefix: prefix, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("NewRetryBudget: %v", err)
	}
	for i := 0; i < 10; i++ {
		budget.OnRequest()
	}
	if !budget.AllowRetry(ctx) {
		t.Errorf("AllowRetry = false, want a retry from the budget")
	}
	if err := budget.Close(); err != nil {
		t.Errorf("budget Close: %v", err)
	}
	if st := budget.Stats(); st.Err != nil || st.LocalRetries != 0 {
		t.Errorf("budget stats %+v: want no error and no local decisions", st)
	}

	// Nothing the user did was denied (go-redis's own connection setup
	// included).
	log, err := admin.Do(ctx, "ACL", "LOG").Slice()
	if err != nil {
		t.Fatalf("ACL LOG: %v", err)
	}
	if len(log) != 0 {
		t.Errorf("ACL LOG has %d denials of Breakwater's own calls, want none: %v", len(log), log)
	}

	// Everything else is denied.
	c := client()
	denied := []struct {
		what string
		cmd  []interface{}
	}{
		{"a key outside the prefix", []interface{}{"SET", "other", "x"}},
		{"a read outside the prefix", []interface{}{"HMGET", "{other:payments}:v1:state", "gen"}},
		{"a plain write inside the prefix", []interface{}{"SET", "{" + prefix + ":x}:v1:state", "x"}},
		{"FLUSHALL", []interface{}{"FLUSHALL"}},
		{"KEYS", []interface{}{"KEYS", "*"}},
		{"CONFIG", []interface{}{"CONFIG", "GET", "requirepass"}},
		{"SCRIPT FLUSH", []interface{}{"SCRIPT", "FLUSH"}},
		{"a script on another key", []interface{}{"EVAL", "return redis.call('DEL', KEYS[1])", 1, "other"}},
		{"a script publishing elsewhere", []interface{}{"EVAL", "return redis.call('PUBLISH', 'other', 'x')", 0}},
		{"publishing elsewhere", []interface{}{"PUBLISH", "other", "x"}},
	}
	for _, d := range denied {
		err := c.Do(ctx, d.cmd...).Err()
		if err == nil || !strings.Contains(err.Error(), "NOPERM") && !strings.Contains(err.Error(), "can't publish") {
			t.Errorf("%s (%v): got %v, want it denied", d.what, d.cmd, err)
		}
	}
	ps := c.Subscribe(ctx, "other")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("SUBSCRIBE other: got %v, want NOPERM", err)
	}

	// A plain TCP client gets nowhere: the server speaks TLS only.
	plain := srv.Client(t, func(o *redis.Options) {
		o.TLSConfig, o.Username, o.Password = nil, user, password
		o.MaxRetries, o.DialTimeout = -1, time.Second
	})
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Errorf("PING over plain TCP: got no error, want one")
	}
}

// waitSubscribed waits until some client listens on prefix's channel.
func waitSubscribed(t *testing.T, admin *redis.Client, prefix string) {
	t.Helper()
	deadline := time.Now().Add(fleetWait)
	for time.Now().Before(deadline) {
		n, err := admin.PubSubNumSub(context.Background(), prefix+":v1:events").Result()
		if err == nil && n[prefix+":v1:events"] > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no subscriber on %s:v1:events within %v", prefix, fleetWait)
}

func waitEvent(t *testing.T, events chan breaker.Event, kind breaker.EventKind) breaker.Event {
	t.Helper()
	timeout := time.After(fleetWait)
	for {
		select {
		case e := <-events:
			if e.Kind == kind {
				return e
			}
		case <-timeout:
			t.Fatalf("no %v event within %v", kind, fleetWait)
			return breaker.Event{}
		}
	}
}

func drain(chans ...chan breaker.Event) []breaker.Event {
	var out []breaker.Event
	for _, ch := range chans {
		for {
			select {
			case e := <-ch:
				out = append(out, e)
				continue
			default:
			}
			break
		}
	}
	return out
}

// A user whose ACL was granted before the scripts forgot idle instances
// (no HGETALL, no HDEL) keeps its breakers working: they forget nothing.
func TestAnACLWithoutForgettingStillWorks(t *testing.T) {
	t.Parallel()
	const (
		prefix   = "old-acl"
		user     = "older"
		password = "older-Pa55word"
	)
	srv := redistest.Start(t)
	ctx := context.Background()
	admin := srv.Client(t)
	var rule []interface{}
	for _, a := range aclRule(user, password, prefix) {
		if a != "+hgetall" && a != "+hdel" {
			rule = append(rule, a)
		}
	}
	if err := admin.Do(ctx, rule...).Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	for _, instance := range []string{"a", "b"} {
		// Each store's first report renews the keys' expiry, when the
		// script would forget idle instances.
		st, err := store.New(srv.Client(t, func(o *redis.Options) { o.Username, o.Password = user, password }),
			store.Options{Prefix: prefix, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		b, err := breaker.New("payments", st, breaker.Settings{Instance: instance})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		b.Listen(func(e breaker.Event) {
			if e.Kind == breaker.StoreUnavailable {
				t.Errorf("instance %s: store unavailable: %v", instance, e.Err)
			}
		})
		if _, err := breaker.Execute(ctx, b, func(context.Context) (int, error) { return 0, nil }); err != nil {
			t.Fatal(err)
		}
		if err := b.Flush(ctx); err != nil {
			t.Fatalf("instance %s: Flush as a user without HGETALL and HDEL: %v", instance, err)
		}
		snap, err := b.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]uint64{"a": 1, "b": 2}[instance]; snap.Counts.TotalSuccesses != want || b.Decider() != breaker.DecideShared {
			t.Errorf("instance %s: %d successes, decided by %v; want %d, by the shared state", instance, snap.Counts.TotalSuccesses, b.Decider(), want)
		}
	}
}
