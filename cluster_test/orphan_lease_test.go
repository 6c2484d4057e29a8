package clustertest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/cluster_test/internal/fleet"
	"github.com/breakwater-go/breakwater/store"
)

// An Acquire that times out while Redis hangs, just as the open time ends,
// runs when Redis thaws: it turns the breaker half-open and grants a probe
// lease that no instance holds. The fleet must still probe soon after.
func TestFleetHungAcquireLeavesNoOrphanLease(t *testing.T) {
	r := fleet.StartRedis(t)
	ms := startFleet(t, r, fleetConfig{
		size: 3, name: "payments",
		settings: breaker.Settings{ConsecutiveFailures: 1, OpenDuration: 300 * time.Millisecond},
		store:    store.Options{Prefix: "orphan-lease", Timeout: storeTimeout, Cooldown: storeCooldown},
	})
	dep := &dependency{}
	succeedOnce(t, ms, dep) // each instance's first Allow loads acquire.lua
	if _, err := breaker.Execute(context.Background(), ms[0].b, dep.fail); !errors.Is(err, errDependency) {
		t.Fatalf("trip: %v", err)
	}
	everyMember(t, ms, hearWithin, "the trip", func(m *member) bool {
		return len(m.events.transitions(breaker.Closed, breaker.Open)) > 0
	})
	r.Pause()
	var oe *breaker.OpenError
	if err := ms[1].b.Check(context.Background()); errors.As(err, &oe) {
		<-time.After(oe.NextProbeIn + 50*time.Millisecond) // Redis's clock runs while frozen
	}
	if p, err := ms[1].b.Allow(context.Background()); err == nil { // Acquire times out
		p.Done(context.Background(), nil)
	}
	r.Unpause()
	deadline := time.Now().Add(3 * time.Second)
	for {
		p, err := ms[2].b.Allow(context.Background())
		if err == nil {
			p.Done(context.Background(), nil)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("3s after Unpause: Allow = %v; want a probe admitted", err)
		}
		<-time.After(20 * time.Millisecond)
	}
}
