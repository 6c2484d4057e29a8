package breaker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/breaker/backend"
)

// lossyStore is a store whose deliveries fail while it is down: some
// before they reach it, some after it counted them (the answer was lost).
// It applies each (instance, seq) at most once, as the contract says, and
// counts what it applied.
type lossyStore struct {
	down atomic.Bool
	n    atomic.Int64

	mu       sync.Mutex
	lastSeq  map[string]int64
	counted  uint64
	resent   int // batches seen again after a lost answer
	sameSeqs bool
	sent     map[int64]backend.Batch
}

func newLossyStore() *lossyStore {
	return &lossyStore{lastSeq: map[string]int64{}, sent: map[int64]backend.Batch{}, sameSeqs: true}
}

var errLossy = errors.New("lossy: redis unavailable")

func (f *lossyStore) reply(v backend.Verdict) backend.Reply {
	return backend.Reply{Verdict: v, State: backend.Closed, Generation: 1, From: backend.Closed}
}
func (f *lossyStore) Acquire(context.Context, backend.Request) (backend.Reply, error) {
	return f.reply(backend.VerdictAllow), nil
}
func (f *lossyStore) Record(ctx context.Context, req backend.Request) (backend.Reply, error) {
	ops := []backend.Op{{Kind: backend.OpRecord, Request: req}}
	f.Do(ctx, ops)
	return ops[0].Reply, ops[0].Err
}
func (f *lossyStore) Force(context.Context, backend.Request) (backend.Reply, error) {
	return f.reply(backend.VerdictOK), nil
}
func (f *lossyStore) Read(context.Context, backend.Request) (backend.Reply, error) {
	if f.down.Load() {
		return backend.Reply{}, errLossy
	}
	return f.reply(backend.VerdictOK), nil
}
func (f *lossyStore) Do(ctx context.Context, ops []backend.Op) {
	for i := range ops {
		op := &ops[i]
		if op.Kind == backend.OpRead {
			op.Reply, op.Err = f.Read(ctx, op.Request)
			continue
		}
		k := f.n.Add(1)
		down := f.down.Load()
		if down && k%2 == 0 { // lost on the way
			op.Err = errLossy
			continue
		}
		f.mu.Lock()
		req := op.Request
		if prev, seen := f.sent[req.Seq]; seen && prev != req.Batch {
			f.sameSeqs = false // a sequence number reused for other outcomes
		}
		f.sent[req.Seq] = req.Batch
		if req.Seq > f.lastSeq[req.Instance] {
			f.lastSeq[req.Instance] = req.Seq
			f.counted += req.Batch.Len()
			op.Reply = f.reply(backend.VerdictCounted)
		} else {
			f.resent++
			op.Reply = f.reply(backend.VerdictDuplicate)
		}
		f.mu.Unlock()
		if down { // counted, but the answer is lost
			op.Reply, op.Err = backend.Reply{}, errLossy
		}
	}
}
func (f *lossyStore) Watch(string, func(int64, *backend.Reply)) func() { return func() {} }

// TestOutcomesCountedExactlyOnce: while deliveries fail, before or after
// the store counted them, outcomes wait and are sent again under the same
// sequence number; once the store answers, every outcome is counted once.
func TestOutcomesCountedExactlyOnce(t *testing.T) {
	for _, mode := range []breaker.Reporting{breaker.ReportBatched, breaker.ReportSync} {
		t.Run(mode.String(), func(t *testing.T) {
			st := newLossyStore()
			b, err := breaker.New("x", st, breaker.Settings{Fallback: breaker.FallbackOpen, Reporting: mode,
				ConsecutiveFailures: 1000000, FlushInterval: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			const n, workers = 20000, 4
			ctx := context.Background()
			work := func(count int) {
				var wg sync.WaitGroup
				for w := 0; w < workers; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; i < count/workers; i++ {
							p, err := b.Allow(ctx)
							if err != nil {
								t.Error(err)
								return
							}
							if i%3 == 0 {
								p.Done(ctx, errors.New("boom"))
							} else {
								p.Done(ctx, nil)
							}
						}
					}()
				}
				wg.Wait()
			}
			work(n / 2)
			// Down: deliveries fail, some after the store counted them.
			st.down.Store(true)
			attempts := st.n.Load()
			work(n / 4)
			deadline := time.Now().Add(30 * time.Second)
			for st.n.Load() < attempts+10 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			st.down.Store(false)
			work(n / 4)
			st.down.Store(false)
			flushCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := b.Flush(flushCtx); err != nil {
				t.Fatal(err)
			}
			st.mu.Lock()
			defer st.mu.Unlock()
			if st.counted != n {
				t.Errorf("store counted %d outcomes, want %d", st.counted, n)
			}
			if !st.sameSeqs {
				t.Errorf("a sequence number was sent again with other outcomes")
			}
			if st.resent == 0 {
				t.Errorf("no batch was sent again after a lost answer; the test did not exercise retries")
			}
		})
	}
}

// slowStore answers every round after delay, and keeps the settling time
// each report carried.
type slowStore struct {
	*lossyStore
	delay  time.Duration
	mu     sync.Mutex
	settle []time.Duration
}

func (s *slowStore) Do(ctx context.Context, ops []backend.Op) {
	time.Sleep(s.delay)
	s.mu.Lock()
	for _, op := range ops {
		if op.Kind == backend.OpRecord && op.Request.Batch.Len() > 0 {
			s.settle = append(s.settle, op.Request.Batch.Settle)
		}
	}
	s.mu.Unlock()
	s.lossyStore.Do(ctx, ops)
}

// TestSettleFollowsLateDeliveries: while a process delivers its batches
// later than the flush interval, its reports say that failures settle that
// much later (at most ten intervals), so that the store does not order
// them before a success still on its way.
func TestSettleFollowsLateDeliveries(t *testing.T) {
	const interval, delay = 5 * time.Millisecond, 30 * time.Millisecond
	st := &slowStore{lossyStore: newLossyStore(), delay: delay}
	b, err := breaker.New("x", st, breaker.Settings{FlushInterval: interval, Instance: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		p, err := b.Allow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.Done(ctx, nil)
		if err := b.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.settle) != 2 {
		t.Fatalf("%d reports, want 2: %v", len(st.settle), st.settle)
	}
	if st.settle[0] < interval {
		t.Errorf("first report: settle %v, want at least the flush interval %v", st.settle[0], interval)
	}
	if got := st.settle[1]; got < delay || got > 10*interval {
		t.Errorf("report after a batch delivered %v late: settle %v, want between %v and %v", delay, got, delay, 10*interval)
	}
}
