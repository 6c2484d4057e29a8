package breaker

import (
	"reflect"
	"time"

	"github.com/breakwater-go/breakwater/breaker/backend"
)

// The local view and how it follows the store.
//
// Every reply of the store (to a report, an Acquire, a read) is a picture
// of the shared state; the view takes the newest. Replies of a script are
// never older than the generation their request knew, so a reply of a
// lower generation than the view's is an old answer, and is dropped. A
// plain read (no script) of a lower generation, asked after the view was
// taken, means the store went back (restored from an older snapshot, a
// lagging replica promoted, keys lost): the breaker then asks the store,
// through a script, to move past the generation it knows, and follows it.

// adopt takes a store's reply as the newest view unless it is older than
// the view, and announces a change of state. read is set for plain reads,
// asked when the view's version was version. It returns the view.
func (b *Breaker) adopt(rep backend.Reply, now time.Time, read bool, version uint64) view {
	b.mu.Lock()
	prev := b.view()
	b.lastAnswer = time.Now()
	if rep.Generation == 0 && !prev.known {
		// The store holds no such breaker yet: the first call creates it
		// and learns its generation.
		b.mu.Unlock()
		return prev
	}
	if prev.known && rep.Generation < prev.gen {
		if read && version == b.viewVersion {
			b.catchUp = true
			b.mu.Unlock()
			b.hub.schedule(b, true, false)
			return prev
		}
		b.mu.Unlock()
		return prev
	}
	if rep.Generation > prev.gen || rep.ServerTime.After(b.viewAt) {
		b.viewAt = rep.ServerTime
	}
	next := view{known: true, state: State(rep.State), gen: rep.Generation}
	switch {
	case rep.State == backend.Open:
		next.deadline = now.Add(rep.Wait)
	case rep.State == backend.HalfOpen && rep.Verdict == backend.VerdictReject:
		// Reject locally while the probe runs, but ask again soon: a lease
		// may be released early, which is not announced.
		next.deadline = now.Add(min(rep.Wait, maxProbeWait))
	case rep.State == backend.HalfOpen && rep.Generation == prev.gen && rep.Verdict != backend.VerdictCounted:
		next.deadline = prev.deadline
		// (A report counted at a half-open generation is a probe's, the
		// only calls it admits: its place is free, and the next call asks.)
	}
	if next == prev {
		b.mu.Unlock()
		return prev
	}
	b.v.Store(&next)
	b.viewVersion++
	if next.gen != prev.gen {
		// Outcomes of the old generation wait apart, to be reported with it.
		old := b.cell.Load()
		b.cell.Store(&cell{gen: next.gen})
		b.addOld(old.gen, old.take(true))
		b.distrust = false
		// A look at the failures of the ended generation is moot, and so
		// is asking the store to move past it.
		b.looks, b.catchUp = nil, false
	}
	// The event is the last transition as the store recorded it; when this
	// instance missed some, they fold into it. A breaker created anew (its
	// keys expired or Redis lost them) records no transition: the change is
	// then from the state this instance saw. A new instance announces only
	// a breaker it finds not closed.
	from := State(rep.From)
	if prev.known && from == State(rep.State) {
		from = prev.state
	}
	changed := rep.Generation != prev.gen && from != State(rep.State) && (prev.known || rep.State != backend.Closed)
	b.mu.Unlock()
	if changed {
		e := Event{Kind: StateChanged, Name: b.name, From: from, To: State(rep.State),
			Generation: rep.Generation, Reason: rep.Reason, Counts: Counts(rep.Counts),
			Instance: rep.By, Local: rep.By == b.s.Instance, Fallback: b.s.Fallback, Decider: DecideShared}
		if rep.State == backend.Open {
			e.NextProbeIn = rep.Wait
		}
		b.emit(e)
	}
	return next
}

// maxProbeWait bounds how long a half-open breaker rejects calls locally
// before it asks the store again.
const maxProbeWait = time.Second

// notified is called by the store's subscription for every announced
// transition (generation > 0) and whenever announcements may have been
// missed (0). An announcement the store verified (it carries the HMAC of
// the breaker's own script) is taken as a reply. For any other it asks the
// hub to read the state, never trusting the announcement itself: a forged
// one changes nothing. An announcement of a generation the view has
// already seen costs nothing; one that a read did not confirm (forged, or
// repeated from an old store) makes the breaker distrust announcements for
// a RefreshInterval: then only one of the next generation is read, once per
// interval, so that a flood costs one read per interval and a real
// transition is still heard at once.
func (b *Breaker) notified(gen int64, verified *backend.Reply) {
	if b.closed.Load() {
		return
	}
	v := b.view()
	if verified != nil && gen > 0 {
		// The store verified that the breaker's own script announced this:
		// it is as good as a reply, and costs no read; unless it is older
		// than an answer already taken for the same generation (pub/sub
		// was slow), whose wait it would push back.
		b.mu.Lock()
		stale := v.known && verified.Generation == v.gen && !verified.ServerTime.After(b.viewAt)
		b.mu.Unlock()
		if !stale {
			b.adopt(*verified, b.clock.Now(), false, 0)
		}
		return
	}
	if gen > 0 && v.known && gen <= v.gen {
		return
	}
	if gen > 0 {
		b.mu.Lock()
		if b.distrust {
			// Distrusted: only the next generation is worth a read, at
			// most once per interval, so that a real transition after a
			// forged announcement is still heard at once.
			now := time.Now()
			if gen != v.gen+1 || now.Sub(b.lastNext) < b.s.RefreshInterval {
				b.mu.Unlock()
				return
			}
			b.lastNext = now
		}
		b.mu.Unlock()
	}
	b.hub.read(b, gen)
}

// readDone takes the answer to a read the hub made for an announcement of
// gen (0: a resubscription or a periodic read).
func (b *Breaker) readDone(rep backend.Reply, gen int64, version uint64) {
	b.adopt(rep, b.clock.Now(), true, version)
	if gen > 0 {
		b.mu.Lock()
		b.lastRead = time.Now()
		if rep.Generation < gen {
			b.distrust = true
		}
		b.mu.Unlock()
	}
}

// isNil reports whether st is nil or a typed nil pointer.
func isNil(st Store) bool {
	if st == nil {
		return true
	}
	v := reflect.ValueOf(st)
	switch v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Interface, reflect.Chan:
		return v.IsNil()
	}
	return false
}
