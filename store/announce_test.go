package store_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker/backend"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

// announcement is what a watcher heard.
type announcement struct {
	gen      int64
	verified *backend.Reply
}

// watch returns the announcements of name that st passes on.
func watch(t *testing.T, st *store.Store, name string) <-chan announcement {
	t.Helper()
	ch := make(chan announcement, 64)
	cancel := st.Watch(name, func(gen int64, verified *backend.Reply) {
		ch <- announcement{gen, verified}
	})
	t.Cleanup(cancel)
	// The subscription tells it has started with a generation of 0.
	select {
	case a := <-ch:
		if a.gen != 0 || a.verified != nil {
			t.Fatalf("first notification: %+v, want the subscription's (0, nil)", a)
		}
	case <-time.After(fleetWait):
		t.Fatal("no subscription within the wait")
	}
	return ch
}

func next(t *testing.T, ch <-chan announcement) announcement {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(fleetWait):
		t.Fatal("no announcement within the wait")
		return announcement{}
	}
}

// TestRedisAnnouncementsAreVerified: a transition's announcement carries
// the state and an HMAC keyed with the breaker's own key (field sk); a
// store that learnt the key from a reply or a read passes the state on as
// verified, exactly as the script's reply tells it. A message whose HMAC
// does not verify (a byte changed, another key, none) or that arrives
// before the store knows the key is only a hint: its generation, no state.
func TestRedisAnnouncementsAreVerified(t *testing.T) {
	const name = "announced"
	e := newFleetEnv(t, store.Options{Prefix: "announce"}, fleetPolicy(time.Minute, time.Minute))
	ctx := context.Background()
	watcher, err := store.New(e.srv.Client(t), store.Options{Prefix: "announce"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = watcher.Close() })
	ch := watch(t, watcher, name)

	// Before the watcher knows the key: a hint.
	gen := e.read(name).Generation
	tripped := e.record(name, "i1", gen, "", "FFF")
	if tripped.State != backend.Open || !tripped.Changed {
		t.Fatalf("three failures: %+v, want a trip", tripped)
	}
	if a := next(t, ch); a.gen != gen+1 || a.verified != nil {
		t.Fatalf("before the key is known: %+v, want a hint of generation %d", a, gen+1)
	}

	// The watcher learns the key with a read; the next transition comes
	// with its state, as the script's reply tells it.
	q := backend.Request{Name: name, Instance: "w"}
	if _, err := watcher.Read(ctx, q); err != nil {
		t.Fatal(err)
	}
	closed := e.force(name, "op", backend.CommandClose)
	a := next(t, ch)
	if a.gen != closed.Generation || a.verified == nil {
		t.Fatalf("after a read: %+v, want the verified state of generation %d", a, closed.Generation)
	}
	v := *a.verified
	fleetCheck(t, "verified close", "Verdict", v.Verdict, backend.VerdictOK, "State", v.State, closed.State,
		"Generation", v.Generation, closed.Generation, "From", v.From, closed.From, "Reason", v.Reason, closed.Reason,
		"By", v.By, closed.By, "Counts", v.Counts, closed.Counts, "ServerTime", v.ServerTime, closed.ServerTime,
		"Wait", v.Wait, closed.Wait)

	// A trip: the state, its wait and the failures that tripped it.
	tripped = e.record(name, "i2", closed.Generation, "", "FFF")
	a = next(t, ch)
	if a.verified == nil || a.verified.State != backend.Open || a.verified.Counts.PreviousFailures != 3 ||
		a.verified.Wait != tripped.Wait || a.verified.Reason != "consecutive_failures" || a.verified.By != "i2" {
		t.Fatalf("verified trip: %+v, want open after 3 failures by i2, wait %v", a.verified, tripped.Wait)
	}

	// Forgeries: the format is right, the HMAC is not.
	key, err := e.raw.HGet(ctx, e.st.Keys(name)[0], "sk").Result()
	if err != nil || len(key) != 40 {
		t.Fatalf("field sk: %q, %v; want 40 hex digits", key, err)
	}
	head := fmt.Sprintf("%d %s", tripped.Generation+1, name)
	body := "closed " + fmt.Sprint(tripped.Generation+1) + " 0 open forced_close mallory 0 0 0 0 0 0 0 0 0 3 6 0 0 0 3 1 1"
	sign := func(k, msg string) string {
		h := hmac.New(sha1.New, []byte(k))
		h.Write([]byte(msg))
		return hex.EncodeToString(h.Sum(nil))
	}
	good := head + "\n" + body + "\n" + sign(key, head+"\n"+body)
	for _, forged := range []string{
		head,
		head + "\n" + body,
		head + "\n" + body + "\n" + sign("0123456789abcdef0123456789abcdef01234567", head+"\n"+body),
		head + "\n" + strings.Replace(body, "mallory", "mallorz", 1) + good[len(head)+1+len(body):],
		head + "\n" + body + "\n" + sign(key, head+"\n"+body+" "),
	} {
		if err := e.raw.Publish(ctx, e.st.Channel(), forged).Err(); err != nil {
			t.Fatal(err)
		}
		if a := next(t, ch); a.verified != nil || a.gen != tripped.Generation+1 {
			t.Errorf("forged %q: %+v, want a hint of generation %d", forged, a, tripped.Generation+1)
		}
	}
	// Signed with the key but not an announcement's state: a field short,
	// one too many, an empty one, a count that is not one.
	last := strings.LastIndexByte(body, ' ')
	for _, bad := range []string{body[:last], body + " 7", strings.Replace(body, " 0 0 ", " 0  ", 1),
		strings.Replace(body, "mallory 0", "mallory x", 1)} {
		msg := head + "\n" + bad
		if err := e.raw.Publish(ctx, e.st.Channel(), msg+"\n"+sign(key, msg)).Err(); err != nil {
			t.Fatal(err)
		}
		if a := next(t, ch); a.verified != nil || a.gen != tripped.Generation+1 {
			t.Errorf("signed %q: %+v, want a hint of generation %d", bad, a, tripped.Generation+1)
		}
	}
	// Signed with the breaker's key, the same message verifies: the key is
	// what tells the breaker's script from anyone else.
	if err := e.raw.Publish(ctx, e.st.Channel(), good).Err(); err != nil {
		t.Fatal(err)
	}
	if a := next(t, ch); a.verified == nil || a.verified.By != "mallory" {
		t.Errorf("signed with the key: %+v, want it verified", a)
	}
}

// TestAnnouncementTellsTheReplysState: a verified announcement carries the
// state of the script's reply exactly, on Redis and miniredis alike, for
// text Lua's string.format would cut (an instance with a NUL byte), names
// with spaces and '%', counts at their largest and a forced open's wait
// of -1.
func TestAnnouncementTellsTheReplysState(t *testing.T) {
	cases := []struct{ name, instance string }{
		{"a b %d %s 100%", "i%d"},
		{"plain", "op\x00x"},
	}
	servers := map[string]func(t *testing.T) *redis.Client{
		"redis": func(t *testing.T) *redis.Client { return redistest.Start(t).Client(t) },
		"miniredis": func(t *testing.T) *redis.Client {
			return redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
		},
	}
	for server, client := range servers {
		for _, largest := range []bool{false, true} {
			for _, c := range cases {
				t.Run(fmt.Sprintf("%s/%q/%q/largest=%v", server, c.name, c.instance, largest), func(t *testing.T) {
					announcedAsReplied(t, client(t), c.name, c.instance, largest)
				})
			}
		}
	}
}

func announcedAsReplied(t *testing.T, c *redis.Client, name, instance string, largest bool) {
	ctx := context.Background()
	opts := store.Options{Prefix: "as-replied", Timeout: 10 * time.Second}
	st, err := store.New(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	watcher, err := store.New(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = watcher.Close() })
	ch := watch(t, watcher, name)
	req := backend.Request{Name: name, Instance: instance, Policy: fleetPolicy(time.Minute, time.Minute), Full: true}
	if _, err := watcher.Read(ctx, req); err != nil { // the watcher learns the key
		t.Fatal(err)
	}
	if largest {
		for _, f := range []string{"tok", "tko", "tslow", "tstale", "trips"} {
			if err := c.HSet(ctx, st.Keys(name)[0], f, "9007199254740991").Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	req.Command = backend.CommandOpen
	rep, err := st.Force(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	a := next(t, ch)
	if a.verified == nil {
		t.Fatalf("announcement %+v not verified (reply %+v)", a, rep)
	}
	v := *a.verified
	if v.By != rep.By || v.Wait != rep.Wait || v.Counts != rep.Counts || v.Generation != rep.Generation ||
		v.State != rep.State || v.From != rep.From || v.Reason != rep.Reason || !v.ServerTime.Equal(rep.ServerTime) {
		t.Fatalf("announced %+v\nreplied   %+v", v, rep)
	}
}
