package breaker

import (
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The store counts each batch of an instance once, by its sequence number
// (see nextSeq), and keeps a run of failures in each instance's own order:
// two live breakers of one name that report as the same instance would
// take each other's batches for duplicates. So each live breaker of a name
// on a Store has an id of its own: its Settings.Instance, or, when another
// live breaker of that name on that Store has it already, the instance
// followed by "#2", "#3" and so on. An id is free again once its breaker is
// closed and its last report answered.

// idKey is a live breaker's id on its store.
type idKey struct {
	st       Store
	name, id string
}

var liveIDs = struct {
	sync.Mutex
	m map[idKey]struct{}
}{m: map[idKey]struct{}{}}

// takeID returns the id a new breaker called name on st reports as, and
// the key it holds among the live ids (nil when st cannot be a map key: it
// is not tracked).
func takeID(st Store, name, instance string) (string, *idKey) {
	if !reflect.TypeOf(st).Comparable() {
		return instance, nil
	}
	liveIDs.Lock()
	defer liveIDs.Unlock()
	id := instance
	for n := 2; ; n++ {
		if _, ok := liveIDs.m[idKey{st, name, id}]; !ok {
			break
		}
		id = instance + "#" + strconv.Itoa(n)
	}
	k := &idKey{st, name, id}
	liveIDs.m[*k] = struct{}{}
	return id, k
}

// releaseID frees b's id, once. (It frees the key takeID gave: b.store may
// have been wrapped since, for an Observer.)
func (b *Breaker) releaseID() {
	if b.id == nil {
		return
	}
	b.idOnce.Do(func() {
		liveIDs.Lock()
		delete(liveIDs.m, *b.id)
		liveIDs.Unlock()
	})
}

// lastSeq is the last sequence number this process gave a batch.
var lastSeq atomic.Int64

// nextSeq returns a sequence number above every earlier one of this
// process, and above those of earlier processes of the same instance: it
// starts from the clock in microseconds, and a batch takes longer than
// that to deliver. (A breaker that takes the id of one closed before it
// goes on above that one's numbers, whatever the clock does.)
func nextSeq(now time.Time) int64 {
	for {
		last := lastSeq.Load()
		seq := max(last+1, now.UnixMicro())
		if lastSeq.CompareAndSwap(last, seq) {
			return seq
		}
	}
}

// raiseSeq makes the process's next sequence numbers exceed n.
func raiseSeq(n int64) {
	for {
		last := lastSeq.Load()
		if last >= n || lastSeq.CompareAndSwap(last, n) {
			return
		}
	}
}

// maxSeqJumps bounds how often a batch goes on above a sequence that the
// store holds for its instance (see Breaker.answer).
const maxSeqJumps = 3

// leaseSeq numbers the probe leases of this process, so that no two of
// its breakers name a lease alike, even when one takes the id of another
// closed before it.
var leaseSeq atomic.Uint64
