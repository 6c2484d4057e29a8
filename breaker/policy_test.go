package breaker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/breaker/backend"
)

// policyStore answers every request with a closed breaker and keeps the
// policies it was sent.
type policyStore struct {
	mu       sync.Mutex
	policies []*backend.Policy
}

func (s *policyStore) answer(req backend.Request) (backend.Reply, error) {
	s.mu.Lock()
	s.policies = append(s.policies, req.Policy)
	s.mu.Unlock()
	return backend.Reply{Verdict: backend.VerdictOK, State: backend.Closed, From: backend.Closed, Generation: 1}, nil
}
func (s *policyStore) Acquire(_ context.Context, req backend.Request) (backend.Reply, error) {
	return s.answer(req)
}
func (s *policyStore) Record(_ context.Context, req backend.Request) (backend.Reply, error) {
	return s.answer(req)
}
func (s *policyStore) Force(_ context.Context, req backend.Request) (backend.Reply, error) {
	return s.answer(req)
}
func (s *policyStore) Read(_ context.Context, req backend.Request) (backend.Reply, error) {
	return s.answer(req)
}
func (s *policyStore) Do(_ context.Context, ops []backend.Op) {
	for i := range ops {
		ops[i].Reply, ops[i].Err = s.answer(ops[i].Request)
	}
}
func (s *policyStore) Watch(string, func(int64, *backend.Reply)) func() { return func() {} }

// TestRequestsCarryThePolicy: every request carries the breaker's policy,
// its defaults applied and Off as 0, made once.
func TestRequestsCarryThePolicy(t *testing.T) {
	st := &policyStore{}
	b, err := breaker.New("policy", st, breaker.Settings{ConsecutiveFailures: breaker.Off, FailureRate: 0.5,
		SlowCallRate: 0.25, SlowCallDuration: time.Second, OpenJitter: 0.1, MaxOpenDuration: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	if _, err := b.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.ForceClose(ctx); err != nil {
		t.Fatal(err)
	}
	want := backend.Policy{ConsecutiveFailures: 0, FailureRate: 0.5, SlowCallRate: 0.25,
		MinimumCalls: breaker.DefaultMinimumCalls, Window: breaker.DefaultWindow, WindowBuckets: breaker.DefaultWindowBuckets,
		Quorum: 1, OpenDuration: breaker.DefaultOpenDuration, MaxOpenDuration: 5 * time.Minute, OpenJitter: 0.1,
		MaxProbes: 1, ProbeSuccesses: 1, ProbeLease: breaker.DefaultProbeLease}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.policies) < 2 {
		t.Fatalf("the store got %d requests, want at least 2", len(st.policies))
	}
	if p := st.policies[0]; p == nil || *p != want {
		t.Fatalf("policy %+v, want %+v", p, want)
	}
	for i, p := range st.policies {
		if p != st.policies[0] {
			t.Fatalf("request %d carries another policy; want the breaker's one", i+1)
		}
	}
}
