package breaker_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
)

// recorder is an Observer that keeps what it is told.
type recorder struct {
	breaker.NopObserver
	mu       sync.Mutex
	attached []string
	detached []string
	calls    []breaker.CallInfo
	rejects  []breaker.Rejection
	ops      map[string]int
	opErrs   int
}

func (r *recorder) Attached(b *breaker.Breaker) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attached = append(r.attached, b.Name())
}

func (r *recorder) Detached(b *breaker.Breaker) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.detached = append(r.detached, b.Name())
}

func (r *recorder) CallEnded(c breaker.CallInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
}

func (r *recorder) CallRejected(x breaker.Rejection) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rejects = append(r.rejects, x)
}

func (r *recorder) StoreCalled(c breaker.StoreCall) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ops == nil {
		r.ops = map[string]int{}
	}
	r.ops[c.Op]++
	if c.Err != nil {
		r.opErrs++
	}
}

func TestObserverSeesCallsRejectionsAndStoreCalls(t *testing.T) {
	e := newMini(t)
	rec := &recorder{}
	s := breaker.Settings{ConsecutiveFailures: 2, OpenDuration: time.Second, Observer: rec, Instance: "a"}
	a := e.instance("obs", s)
	s.Instance = "b"
	b := e.instance("obs", s)
	bEvents := events(b)
	ctx := context.Background()

	if err := call(a, nil); err != nil {
		t.Fatal(err)
	}
	call(a, errBoom)
	call(a, errBoom) // trips
	if err := call(a, nil); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("after the trip: got %v, want ErrOpen", err)
	}
	e.advance(time.Second)
	p, err := a.Allow(ctx) // the fleet's one probe
	if err != nil || !p.Probe() {
		t.Fatalf("after the open time: got %v, probe %v; want a probe", err, p.Probe())
	}
	for ev := next(t, bEvents, breaker.StateChanged); ev.To != breaker.HalfOpen; ev = next(t, bEvents, breaker.StateChanged) {
	}
	if err := call(b, nil); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("b while a probes: got %v, want ErrOpen", err)
	}
	p.Done(ctx, nil)
	if err := a.ForceOpen(ctx); err != nil {
		t.Fatal(err)
	}
	if err := call(a, nil); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("forced open: got %v, want ErrOpen", err)
	}
	a.Close()

	rec.mu.Lock()
	defer rec.mu.Unlock()
	var outcomes []string
	for _, c := range rec.calls {
		o := c.Outcome.String()
		if c.Probe {
			o += "(probe)"
		}
		outcomes = append(outcomes, o)
	}
	if got, want := strings.Join(outcomes, " "), "success failure failure success(probe)"; got != want {
		t.Errorf("calls: got %s, want %s", got, want)
	}
	var reasons []string
	for _, r := range rec.rejects {
		reasons = append(reasons, r.Reason.String())
	}
	if got, want := strings.Join(reasons, " "), "open half_open_full forced_open"; got != want {
		t.Errorf("rejections: got %s, want %s", got, want)
	}
	if rec.ops["record"] < 1 || rec.ops["force"] != 1 || rec.ops["acquire"] < 2 {
		t.Errorf("store calls: got %v, want records (batched), 1 force, at least 2 acquires", rec.ops)
	}
	if strings.Join(rec.attached, ",") != "obs,obs" || strings.Join(rec.detached, ",") != "obs" {
		t.Errorf("attached %q, detached %q; want both breakers attached, a detached", rec.attached, rec.detached)
	}
}

func TestLoggerLogsTransitionsAndStoreLoss(t *testing.T) {
	e := newMini(t)
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	b := e.instance("logged", breaker.Settings{ConsecutiveFailures: 1, OpenDuration: time.Minute, Logger: log, Instance: "pod-1"})
	call(b, errBoom)
	e.m.Close() // the store goes away
	e.advance(time.Minute)
	call(b, nil)
	got := buf.String()
	for _, want := range []string{
		`level=INFO msg="breaker: state changed" breaker=logged from=closed to=open reason=consecutive_failures`,
		`by=pod-1 local=true next_probe_in=1m0s failures=1`,
		`level=WARN msg="breaker: store unavailable, deciding locally" breaker=logged fallback=local state=open error=`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q; got:\n%s", want, got)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// flushRecorder keeps the batches an Observer is told of.
type flushRecorder struct {
	breaker.NopObserver
	mu      sync.Mutex
	flushes []breaker.FlushInfo
}

func (r *flushRecorder) BatchFlushed(f breaker.FlushInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushes = append(r.flushes, f)
}

// TestObserverSeesHowLateABatchIs: BatchFlushed says how many outcomes a
// batch carried, how long the store took, and how long before the answer
// its first outcome happened.
func TestObserverSeesHowLateABatchIs(t *testing.T) {
	e := newMini(t)
	rec := &flushRecorder{}
	// Nothing is due before Close.
	s := breaker.Settings{FlushInterval: time.Hour, Observer: rec, Instance: "a"}
	a := e.instance("late", s)
	if err := call(a, nil); err != nil {
		t.Fatal(err)
	}
	first := time.Now()
	if err := call(a, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	waited := time.Since(first)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.flushes) != 1 {
		t.Fatalf("%d batches flushed, want 1: %+v", len(rec.flushes), rec.flushes)
	}
	f := rec.flushes[0]
	if f.Name != "late" || f.Outcomes != 2 || f.Err != nil {
		t.Errorf("flush %+v, want 2 outcomes of late, no error", f)
	}
	if f.Age < waited {
		t.Errorf("Age %v, want at least the %v the batch waited", f.Age, waited)
	}
	if f.Duration <= 0 || f.Duration > f.Age {
		t.Errorf("Duration %v, want the store's time, within Age %v", f.Duration, f.Age)
	}
}
