package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/retry"
)

const (
	// settle is how long a transition's first sighting waits for the other
	// instances to report it before its line is printed.
	settle = 250 * time.Millisecond
	// slot is the window over which retries (and store events) are added up
	// into one line per attempt number.
	slot = 500 * time.Millisecond
)

// ANSI colours of the feed's lines.
const (
	yellow = "33"
	red    = "31"
	cyan   = "36"
	green  = "32"
	bold   = "1"
	dim    = "2"
)

// feed prints the fleet's activity as it happens, one line per event. Many
// instances report the same fleet-wide transition: it is printed once, with
// how many instances saw it. Retries are added up per attempt number.
//
// Events reach the feed through a buffered channel and never block the
// caller (a breaker listener or a retry policy): when the feed falls behind,
// events are dropped and counted.
type feed struct {
	out       io.Writer
	color     bool
	host      string
	instances int
	shared    bool // one breaker for the whole fleet
	start     time.Time

	items   chan item
	dropped atomic.Int64
	stop    chan struct{}
	done    chan struct{}

	// Owned by the loop (or by a test calling add and flush).
	pending []*group
	open    map[any]*group // groups still taking events, by key
	printed map[transitionKey]bool
	lastGen map[string]int64 // the newest generation printed, by breaker
}

type itemKind int

const (
	noteItem itemKind = iota
	retryItem
	breakerItem
	blockedItem // a group only: calls and retries the gate stopped
)

// item is one event on its way to the feed.
type item struct {
	kind     itemKind
	at       time.Time
	text     string        // noteItem
	retry    retry.Event   // retryItem
	breaker  breaker.Event // breakerItem
	id       string        // breakerItem: the store prefix, naming the shared breaker
	instance int           // breakerItem: the instance that saw it
}

// transitionKey names one transition of one shared breaker.
type transitionKey struct {
	id  string
	gen int64
}

type retryKey struct {
	slot    int64
	attempt int
}

type blockedKey int64

// storeKey names the events of one kind in one slot: the store's loss or
// return, or the local breakers' transitions to one state while it is away.
type storeKey struct {
	slot int64
	kind breaker.EventKind
	to   breaker.State // a local breaker's transition
}

// group is one line of the feed in the making.
type group struct {
	kind  itemKind
	first time.Time // when the first of its events happened
	ready time.Time // when it may be printed
	keys  []any

	text string // noteItem

	// retryItem: attempts that failed and will be retried.
	// blockedItem: count calls and calledOff retries the gate stopped.
	attempt, max, count, calledOff int
	minWait, maxWait               time.Duration

	// breakerItem
	ev       breaker.Event
	breakers map[string]bool
	seenBy   map[int]bool
	minFail  uint64
	maxFail  uint64
	evKind   breaker.EventKind
}

func newFeed(out io.Writer, color bool, host string, instances int, shared bool, start time.Time) *feed {
	return &feed{
		out: out, color: color, host: host, instances: instances, shared: shared, start: start,
		items:   make(chan item, 4096),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		open:    map[any]*group{},
		printed: map[transitionKey]bool{},
		lastGen: map[string]int64{},
	}
}

func (f *feed) send(it item) {
	select {
	case f.items <- it:
	default:
		f.dropped.Add(1)
	}
}

// note prints text as it is, in order with the events.
func (f *feed) note(text string) {
	f.send(item{kind: noteItem, at: time.Now(), text: text})
}

// retry is a retry.Policy's OnEvent.
func (f *feed) retry(e retry.Event) {
	if e.WillRetry || e.GateRefused {
		f.send(item{kind: retryItem, at: time.Now(), retry: e})
	}
}

// breaker is a breaker listener of the instance numbered instance, whose
// breakers are kept under the store prefix id.
func (f *feed) breaker(id string, instance int, e breaker.Event) {
	f.send(item{kind: breakerItem, at: time.Now(), breaker: e, id: id, instance: instance})
}

// run prints the feed until close is called.
func (f *feed) run() {
	defer close(f.done)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case it := <-f.items:
			f.add(it)
		case now := <-tick.C:
			f.flush(now, false)
		case <-f.stop:
			for {
				select {
				case it := <-f.items:
					f.add(it)
				default:
					f.flush(time.Now(), true)
					if n := f.dropped.Load(); n > 0 {
						fmt.Fprintf(f.out, "        (%d events were not shown: the feed fell behind)\n", n)
					}
					return
				}
			}
		}
	}
}

// close prints what is left and stops the feed.
func (f *feed) close() {
	close(f.stop)
	<-f.done
}

// add takes one event into the line it belongs to.
func (f *feed) add(it item) {
	switch it.kind {
	case noteItem:
		f.pending = append(f.pending, &group{kind: noteItem, first: it.at, ready: it.at, text: it.text})
	case retryItem:
		if it.retry.GateRefused {
			f.addBlocked(it)
			return
		}
		n := f.slot(it.at)
		k := retryKey{slot: n, attempt: it.retry.Attempt}
		g := f.open[k]
		if g == nil {
			g = &group{kind: retryItem, first: it.at, ready: f.slotEnd(n), keys: []any{k},
				attempt: it.retry.Attempt, max: it.retry.MaxAttempts, minWait: it.retry.Backoff}
			f.open[k] = g
			f.pending = append(f.pending, g)
		}
		g.count++
		g.minWait = min(g.minWait, it.retry.Backoff)
		g.maxWait = max(g.maxWait, it.retry.Backoff)
	case breakerItem:
		if it.breaker.Kind == breaker.StateChanged && it.breaker.Decider != breaker.DecideLocal {
			f.addTransition(it)
			return
		}
		n := f.slot(it.at)
		k := storeKey{slot: n, kind: it.breaker.Kind}
		if it.breaker.Kind == breaker.StateChanged {
			k.to = it.breaker.To
		}
		g := f.open[k]
		if g == nil {
			g = &group{kind: breakerItem, first: it.at, ready: f.slotEnd(n), keys: []any{k},
				ev: it.breaker, evKind: it.breaker.Kind, seenBy: map[int]bool{}}
			f.open[k] = g
			f.pending = append(f.pending, g)
		}
		g.seenBy[it.instance] = true
	}
}

// addTransition counts an instance's sighting of a transition. Transitions
// of different breakers (one per instance) to the same state within the
// settle time share a line.
func (f *feed) addTransition(it item) {
	e := it.breaker
	k := transitionKey{id: it.id, gen: e.Generation}
	if f.printed[k] || e.Generation < f.lastGen[it.id] {
		return // seen after its line, or a newer transition's, was printed
	}
	if g := f.open[k]; g != nil {
		g.seenBy[it.instance] = true
		return
	}
	var g *group
	for _, p := range f.pending {
		if p.kind == breakerItem && p.evKind == breaker.StateChanged && p.ev.To == e.To &&
			p.ev.Reason == e.Reason && !p.breakers[it.id] && it.at.Sub(p.first) < settle {
			g = p
			break
		}
	}
	if g == nil {
		g = &group{kind: breakerItem, first: it.at, ready: it.at.Add(settle), ev: e,
			evKind: breaker.StateChanged, breakers: map[string]bool{}, seenBy: map[int]bool{},
			minFail: e.Counts.PreviousFailures, maxFail: e.Counts.PreviousFailures}
		f.pending = append(f.pending, g)
	}
	g.keys = append(g.keys, k)
	g.breakers[it.id] = true
	g.seenBy[it.instance] = true
	g.minFail = min(g.minFail, e.Counts.PreviousFailures)
	g.maxFail = max(g.maxFail, e.Counts.PreviousFailures)
	f.open[k] = g
}

// addBlocked counts a call, or a retry, that the gate (an open breaker)
// stopped before it sent anything. They are added up per second, in a line
// printed at the end of the second.
func (f *feed) addBlocked(it item) {
	n := int64(it.at.Sub(f.start) / time.Second)
	k := blockedKey(n)
	g := f.open[k]
	if g == nil {
		end := f.start.Add(time.Duration(n+1) * time.Second)
		g = &group{kind: blockedItem, first: end, ready: end.Add(25 * time.Millisecond), keys: []any{k}}
		f.open[k] = g
		f.pending = append(f.pending, g)
	}
	if it.retry.Attempt > 1 {
		g.calledOff++
	} else {
		g.count++
	}
}

func (f *feed) slot(at time.Time) int64 { return int64(at.Sub(f.start) / slot) }

func (f *feed) slotEnd(n int64) time.Time { return f.start.Add(time.Duration(n+1) * slot) }

// flush prints, in the order they began, the lines that are complete at
// now, stopping at the first that is not (all of them when final), so that
// lines never come out of order.
func (f *feed) flush(now time.Time, final bool) {
	f.orderTransitions()
	sort.SliceStable(f.pending, func(i, j int) bool { return f.pending[i].first.Before(f.pending[j].first) })
	i := 0
	for ; i < len(f.pending); i++ {
		g := f.pending[i]
		if !final && now.Before(g.ready) {
			break
		}
		f.print(g)
		for _, k := range g.keys {
			delete(f.open, k)
			if tk, ok := k.(transitionKey); ok {
				f.printed[tk] = true
				f.lastGen[tk.id] = max(f.lastGen[tk.id], tk.gen)
			}
		}
	}
	f.pending = f.pending[i:]
}

// orderTransitions puts the line of a breaker's earlier transition before
// the line of its later one. Instances hear of transitions at different
// moments: the first sighting of a half-open state that lasted a few
// milliseconds may come after the first sighting of the open state that
// followed it, and the "Testing" line must still come first.
func (f *feed) orderTransitions() {
	for round := 0; round < len(f.pending); round++ {
		moved := false
		for _, a := range f.pending {
			for _, b := range f.pending {
				if a != b && precedes(a, b) && !a.first.Before(b.first) {
					a.first = b.first.Add(-time.Nanosecond)
					moved = true
				}
			}
		}
		if !moved {
			return
		}
	}
}

// precedes reports whether group a holds a transition of a breaker that
// happened before one that b holds.
func precedes(a, b *group) bool {
	for _, ka := range a.keys {
		ta, ok := ka.(transitionKey)
		if !ok {
			continue
		}
		for _, kb := range b.keys {
			if tb, ok := kb.(transitionKey); ok && ta.id == tb.id && ta.gen < tb.gen {
				return true
			}
		}
	}
	return false
}

func (f *feed) print(g *group) {
	line, colour := f.line(g)
	at := fmt.Sprintf("%6.2fs", g.first.Sub(f.start).Seconds())
	fmt.Fprintf(f.out, "%s  %s\n", paint(f.color, dim, at), paint(f.color, colour, line))
}

// line returns a group's text and colour.
func (f *feed) line(g *group) (string, string) {
	switch g.kind {
	case noteItem:
		return g.text, bold
	case retryItem:
		wait := ms(g.minWait)
		if ms(g.maxWait) != wait {
			wait += "–" + ms(g.maxWait)
		}
		return fmt.Sprintf("Retrying %s (%d/%d)… %s, backoff %s",
			f.host, g.attempt+1, g.max, plural(g.count, "call"), wait), yellow
	case blockedItem:
		var parts []string
		if g.count > 0 {
			parts = append(parts, plural(g.count, "call")+" rejected fast")
		}
		if g.calledOff > 0 {
			parts = append(parts, plural(g.calledOff, "retry")+" called off")
		}
		return fmt.Sprintf("Blocked in the last second: %s, nothing sent", strings.Join(parts, ", ")), dim
	}
	switch g.evKind {
	case breaker.StoreUnavailable:
		return fmt.Sprintf("Redis unreachable: %s (fallback %s)",
			verb(len(g.seenBy), "decides locally", "decide locally"), g.ev.Fallback), red
	case breaker.StoreRecovered:
		return fmt.Sprintf("Redis answers again: %s",
			verb(len(g.seenBy), "follows the shared state", "follow the shared state")), green
	}
	if g.ev.Decider == breaker.DecideLocal {
		switch g.ev.To {
		case breaker.Open:
			return "Deciding locally: " + verb(len(g.seenBy), "opens its local breaker", "open their local breakers"), red
		case breaker.HalfOpen:
			return "Deciding locally: " + verb(len(g.seenBy), "half-opens its local breaker", "half-open their local breakers"), cyan
		}
		return "Deciding locally: " + verb(len(g.seenBy), "closes its local breaker", "close their local breakers"), green
	}
	e, n := g.ev, len(g.breakers)
	var text, colour string
	switch {
	case e.To == breaker.Open && e.Reason == "probe_failed":
		text = fmt.Sprintf("Circuit OPEN: %s blocked again, the probe failed; next probe in %s",
			f.host, ms(e.NextProbeIn.Round(10*time.Millisecond)))
		colour = red
	case e.To == breaker.Open:
		fails := fmt.Sprint(g.minFail)
		if g.maxFail != g.minFail {
			fails += "–" + fmt.Sprint(g.maxFail)
		}
		each := ""
		if n > 1 {
			each = " each"
		}
		text = fmt.Sprintf("Circuit OPEN: %s blocked after %s failures%s; next probe in %s",
			f.host, fails, each, ms(e.NextProbeIn.Round(10*time.Millisecond)))
		colour = red
	case e.To == breaker.HalfOpen && f.shared:
		text = fmt.Sprintf("Testing: %s, %s sends the fleet's one probe", f.host, e.Instance)
		colour = cyan
	case e.To == breaker.HalfOpen:
		text = fmt.Sprintf("Testing: %s, %s let through", f.host, plural(n, "probe"))
		colour = cyan
	case e.To == breaker.Closed && f.shared:
		text = fmt.Sprintf("Recovered: %s, %s's probe succeeded", f.host, e.Instance)
		colour = green
	case e.To == breaker.Closed:
		text = fmt.Sprintf("Recovered: %s", f.host)
		colour = green
	default:
		text = fmt.Sprintf("Breaker %s: %s → %s (%s)", f.host, e.From, e.To, e.Reason)
		colour = bold
	}
	switch {
	case f.shared:
		text += fmt.Sprintf(" [seen by %d/%d instances]", len(g.seenBy), f.instances)
	case n == 1:
		for i := range g.seenBy {
			text += fmt.Sprintf(" [pod-%02d's own breaker]", i+1)
		}
	default:
		text += fmt.Sprintf(" [%d breakers, one per instance]", n)
	}
	return text, colour
}

// ms formats d in whole milliseconds, or in seconds from a second up.
func ms(d time.Duration) string {
	if d >= time.Second {
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return fmt.Sprintf("%dms", d.Round(time.Millisecond).Milliseconds())
}

// verb returns "1 instance <one>" or "<n> instances <many>".
func verb(n int, one, many string) string {
	if n == 1 {
		return "1 instance " + one
	}
	return fmt.Sprintf("%d instances %s", n, many)
}

func plural(n int, word string) string {
	switch {
	case n == 1:
		return "1 " + word
	case strings.HasSuffix(word, "y"):
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(word, "y"))
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// paint colours s when colour is on.
func paint(on bool, colour, s string) string {
	if !on {
		return s
	}
	return "\x1b[" + colour + "m" + s + "\x1b[0m"
}
