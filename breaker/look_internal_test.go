package breaker

import (
	"testing"
	"time"
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
