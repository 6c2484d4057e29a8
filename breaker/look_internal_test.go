package breaker

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker/backend"
)

// TestLooks: a breaker keeps the looks it plans that no other one says as
// much as, as soon; a due look takes those it says as much as with it, and
// a later one stays planned.
func TestLooks(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	b := &Breaker{}
	b.planLook(look{through: at(0), due: at(20)}) // a settling time after a failure
	b.planLook(look{through: at(5), due: at(8)})  // a settle call: sooner, and says more
	b.planLook(look{through: at(6), due: at(30)}) // a later failure's
	b.planLook(look{through: at(4), due: at(9)})  // says less, later: not kept
	if len(b.looks) != 2 {
		t.Fatalf("planned %+v, want the looks through 5 ms and 6 ms", b.looks)
	}
	if next := b.nextLook(); !next.Equal(at(8)) {
		t.Fatalf("next look due %v, want 8 ms", next.Sub(t0))
	}
	if b.lookDue(at(7)) {
		t.Fatal("a look is due at 7 ms")
	}
	l, ok := b.takeLook(at(8))
	if !ok || !l.through.Equal(at(5)) {
		t.Fatalf("at 8 ms: took %+v (%v), want the look through 5 ms", l, ok)
	}
	if next := b.nextLook(); !next.Equal(at(30)) {
		t.Fatalf("after it, next look due %v, want 30 ms", next.Sub(t0))
	}
	if _, ok := b.takeLook(at(29)); ok {
		t.Fatal("took a look before it was due")
	}
	for i := 0; i < 2*maxLooks; i++ { // each says more, later: none says as much, as soon
		b.planLook(look{through: at(40 + i), due: at(100 + i)})
	}
	if len(b.looks) > maxLooks {
		t.Fatalf("%d looks planned, want at most %d", len(b.looks), maxLooks)
	}
	l, ok = b.takeLook(at(1000))
	if !ok || !l.through.Equal(at(40+2*maxLooks-1)) || len(b.looks) != 0 {
		t.Fatalf("at last: took %+v (%v), %d left; want the look through %d ms and none left", l, ok, len(b.looks), 40+2*maxLooks-1)
	}
}

// lookStore answers every op as a closed breaker of generation 1; reads
// fail while failReads is set. It passes on every failed read and the
// SettledThrough of every report that carries one.
type lookStore struct {
	failReads atomic.Bool
	failed    chan struct{}
	looks     chan time.Time
	reports   chan struct{}
}

func newLookStore() *lookStore {
	return &lookStore{failed: make(chan struct{}, 64), looks: make(chan time.Time, 64), reports: make(chan struct{}, 64)}
}

func (s *lookStore) reply() backend.Reply {
	return backend.Reply{Verdict: backend.VerdictOK, State: backend.Closed, Generation: 1, ServerTime: time.Now()}
}
func (s *lookStore) Acquire(context.Context, backend.Request) (backend.Reply, error) {
	r := s.reply()
	r.Verdict = backend.VerdictAllow
	return r, nil
}
func (s *lookStore) Record(context.Context, backend.Request) (backend.Reply, error) {
	return s.reply(), nil
}
func (s *lookStore) Force(context.Context, backend.Request) (backend.Reply, error) {
	return s.reply(), nil
}
func (s *lookStore) Read(context.Context, backend.Request) (backend.Reply, error) {
	return s.reply(), nil
}
func (s *lookStore) Watch(string, func(int64, *backend.Reply)) func() { return func() {} }
func (s *lookStore) Do(_ context.Context, ops []backend.Op) {
	for i := range ops {
		if ops[i].Kind == backend.OpRead && s.failReads.Load() {
			ops[i].Err = errors.New("read failed")
			s.failed <- struct{}{}
			continue
		}
		ops[i].Reply = s.reply()
		if ops[i].Kind == backend.OpRecord {
			ops[i].Reply.Verdict = backend.VerdictCounted
			if t := ops[i].Request.SettledThrough; !t.IsZero() {
				s.looks <- t
			}
			if ops[i].Request.Batch.Len() > 0 {
				s.reports <- struct{}{}
			}
		}
	}
}

// TestLookOutlivesAnEmptyTurn: a planned look is sent when due even after
// the hub took the breaker off its queue with nothing to send before then
// (here on the retry after a failed read).
func TestLookOutlivesAnEmptyTurn(t *testing.T) {
	st := newLookStore()
	b, err := New("look", st, Settings{FlushInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.adopt(st.reply(), time.Now(), false, 0)
	through := time.Now()
	b.lookAt(through, time.Now().Add(300*time.Millisecond), 200*time.Millisecond)
	st.failReads.Store(true)
	b.hub.read(b, 2) // an announcement's read; it fails, and is tried again
	<-st.failed
	st.failReads.Store(false)
	select {
	case got := <-st.looks:
		if !got.Equal(through) {
			t.Errorf("look through %v, want %v", got, through)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the planned look was never sent")
	}
}

// TestSettleCallsAreNeverDropped: a call that comes within a quarter of a
// flush interval of the last one heeded is not dropped: the report is
// planned for a quarter interval after that one, and further calls
// meanwhile change nothing.
func TestSettleCallsAreNeverDropped(t *testing.T) {
	st := newLookStore()
	b, err := New("calls", st, Settings{FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.adopt(st.reply(), time.Now(), false, 0)
	hold := func() {
		t.Helper()
		p, err := b.Allow(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		p.Done(context.Background(), nil)
	}
	hold()
	b.settleCalled(1)
	select {
	case <-st.reports:
	case <-time.After(10 * time.Second):
		t.Fatal("the first call brought no report")
	}
	b.mu.Lock()
	first := b.settleAt
	b.mu.Unlock()
	hold()
	b.settleCalled(1)
	b.settleCalled(1)
	b.mu.Lock()
	now, at := b.settleNow, b.settleAt
	b.mu.Unlock()
	b.hub.mu.Lock()
	queued, due := b.queued.Load(), b.due
	b.hub.mu.Unlock()
	if want := first.Add(15 * time.Minute); !now || !at.Equal(want) || !queued || due.After(want) {
		t.Errorf("after two more calls: planned %v at %v, queued %v due %v; want planned at %v, queued by then",
			now, at.Sub(first), queued, due.Sub(first), want.Sub(first))
	}
}
