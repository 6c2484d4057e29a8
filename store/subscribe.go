package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker/backend"
)

// Watch implements backend.Store. The first Watch starts the store's one
// subscription to its channel; notify is called from the subscription's
// goroutine with the generation of each announced transition of name, and
// with 0 after every (re)subscription, when announcements may have been
// missed. An announcement whose HMAC verifies with the breaker's key
// (which every reply and read of the breaker carries) comes with the state
// it announces; any other one is a hint. Messages that do not parse are
// dropped: they change nothing.
func (s *Store) Watch(name string, notify func(generation int64, verified *backend.Reply)) (cancel func()) {
	return register(s, s.watchers, name, notify, func() { delete(s.announceKeys, name) })
}

// WatchSettle implements backend.Settler: settle is called from the
// subscription's goroutine with the generation of each call of the record
// script (lua/record.lua) to report the named breaker's outcomes at once,
// when its HMAC verifies with the breaker's key, as Watch learnt it. Other
// such messages change nothing.
func (s *Store) WatchSettle(name string, settle func(generation int64)) (cancel func()) {
	return register(s, s.settlers, name, settle, nil)
}

// register adds fn to m's functions for name, and starts the store's one
// subscription unless it runs; cancel removes fn, and runs gone (if any)
// when name has no function left in m. Nothing is added once the store is
// closed.
func register[F any](s *Store, m map[string]map[int]F, name string, fn F, gone func()) (cancel func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return func() {}
	}
	id := s.nextID
	s.nextID++
	if m[name] == nil {
		m[name] = map[int]F{}
	}
	m[name][id] = fn
	s.startLocked()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(m[name], id)
		if len(m[name]) == 0 {
			delete(m, name)
			if gone != nil {
				gone()
			}
		}
	}
}

// startLocked starts the store's one subscription, unless it runs; the
// caller holds mu.
func (s *Store) startLocked() {
	if s.subStop == nil {
		ctx, stop := context.WithCancel(context.Background())
		s.subStop = stop
		s.subDone = make(chan struct{})
		go s.subscribe(ctx, s.subDone)
	}
}

// Close stops the subscription and waits for it to end. It does not close
// the Redis client.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	stop, done, ps := s.subStop, s.subDone, s.pubsub
	s.mu.Unlock()
	s.runner.close()
	if stop != nil {
		stop()
		if ps != nil {
			_ = ps.Close() // unblocks a Receive that is waiting for a message
		}
		<-done
	}
	return nil
}

func (s *Store) subscribe(ctx context.Context, done chan struct{}) {
	defer close(done)
	ps := s.client.Subscribe(ctx, s.channel)
	defer ps.Close()
	s.mu.Lock()
	s.pubsub = ps
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	backoff := 50 * time.Millisecond
	lost := false
	for {
		msg, err := ps.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !lost {
				lost = true
				s.log(slog.LevelWarn, "store: subscription lost, resubscribing", slog.Any("error", err))
			}
			// go-redis reconnects and resubscribes on the next Receive; a
			// *redis.Subscription then tells the watchers to re-read.
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				if lost {
					lost = false
					s.log(slog.LevelInfo, "store: resubscribed; breakers re-read their state")
				}
				s.notifyAll()
			}
		case *redis.Message:
			if gen, name, ok := parseSettle(m.Payload); ok {
				s.settle(name, gen, m.Payload)
			} else if gen, name, ok := parseAnnouncement(m.Payload); ok {
				s.notify(name, gen, s.verify(name, gen, m.Payload))
			}
		}
	}
}

// log logs to Options.Logger, if any.
func (s *Store) log(level slog.Level, msg string, attrs ...slog.Attr) {
	if l := s.opts.Logger; l != nil {
		l.LogAttrs(context.Background(), level, msg, append(attrs, slog.String("channel", s.channel))...)
	}
}

// parseAnnouncement reads "<generation> <name>", the first line of an
// announcement (lib.lua).
func parseAnnouncement(payload string) (gen int64, name string, ok bool) {
	head, _, _ := strings.Cut(payload, "\n")
	g, name, found := strings.Cut(head, " ")
	if !found || name == "" {
		return 0, "", false
	}
	gen, err := strconv.ParseInt(g, 10, 64)
	if err != nil || gen <= 0 {
		return 0, "", false
	}
	return gen, name, true
}

// settlePrefix begins a call to report at once (lua/record.lua):
// "settle <generation> <name>", then its HMAC-SHA1 keyed with the
// breaker's key, a line each.
const settlePrefix = "settle "

// parseSettle reads the first line of a call to report at once.
func parseSettle(payload string) (gen int64, name string, ok bool) {
	rest, found := strings.CutPrefix(payload, settlePrefix)
	if !found {
		return 0, "", false
	}
	return parseAnnouncement(rest)
}

// settle calls the WatchSettle functions of name when payload's HMAC
// verifies with the key the store last learnt for the breaker.
func (s *Store) settle(name string, gen int64, payload string) {
	s.mu.Lock()
	key := s.announceKeys[name]
	s.mu.Unlock()
	if key == "" {
		return
	}
	head, mac, ok := strings.Cut(payload, "\n")
	if !ok || !s.signed(key, mac, head) {
		return
	}
	for _, fn := range listed(s, s.settlers, name) {
		fn(gen)
	}
}

// listed returns m's functions for name, to be called without mu.
func listed[F any](s *Store, m map[string]map[int]F, name string) []F {
	s.mu.Lock()
	defer s.mu.Unlock()
	fns := make([]F, 0, len(m[name]))
	for _, fn := range m[name] {
		fns = append(fns, fn)
	}
	return fns
}

func (s *Store) notify(name string, gen int64, verified *backend.Reply) {
	fns := listed(s, s.watchers, name)
	for i, fn := range fns {
		if verified != nil && i < len(fns)-1 {
			r := *verified // each watcher its own copy (the last one takes verified)
			fn(gen, &r)
		} else {
			fn(gen, verified)
		}
	}
}

func (s *Store) notifyAll() {
	s.mu.Lock()
	var fns []func(int64, *backend.Reply)
	for _, ws := range s.watchers {
		for _, fn := range ws {
			fns = append(fns, fn)
		}
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn(0, nil)
	}
}

// announcedFields is how many fields the state line of an announcement
// holds: fields 2 to 20 and 23 to 26 of a script's reply (lib.lua).
const announcedFields = 23

// verify returns the state an announcement tells when its HMAC verifies
// with the key the store last learnt for the breaker, or nil.
func (s *Store) verify(name string, gen int64, payload string) *backend.Reply {
	s.mu.Lock()
	key := s.announceKeys[name]
	s.mu.Unlock()
	if key == "" {
		return nil
	}
	head, rest, ok := strings.Cut(payload, "\n")
	if !ok {
		return nil
	}
	body, mac, ok := strings.Cut(rest, "\n")
	if !ok || !s.signed(key, mac, payload[:len(head)+1+len(body)]) {
		return nil
	}
	// The reply these fields come from (lib.lua): fields 2 to 20, then
	// 23 to 26; a verdict, and neither a lease nor a change of its own.
	var a [replyLen + 1]string
	a[0], a[20], a[21] = string(backend.VerdictOK), "", "0"
	for i := 0; i < announcedFields; i++ {
		at := i + 1
		if i >= 19 {
			at = i + 3
		}
		var ok bool
		a[at], body, ok = strings.Cut(body, " ")
		if ok == (i == announcedFields-1) {
			return nil // too few fields, or too many
		}
	}
	rep, err := parseFields(&parser{s: a[:]})
	if err != nil || rep.Generation != gen {
		return nil
	}
	return &rep
}

// signed reports whether mac is the HMAC-SHA1 of msg keyed with key, in
// hex, as lib.lua's hmac makes it. Only the subscription's goroutine calls
// it: it keeps the keyed hashes it made (s.macs) for the next message of
// the same breaker, and one buffer for the message and its digest.
func (s *Store) signed(key, mac, msg string) bool {
	if len(mac) != 2*sha1.Size {
		return false
	}
	var want [sha1.Size]byte
	if _, err := hex.Decode(want[:], []byte(mac)); err != nil {
		return false
	}
	h := s.macs[key]
	if h == nil {
		if len(s.macs) >= maxMACs {
			clear(s.macs)
		}
		h = hmac.New(sha1.New, []byte(key))
		s.macs[key] = h
	} else {
		h.Reset()
	}
	s.macBuf = append(s.macBuf[:0], msg...)
	h.Write(s.macBuf)
	s.macBuf = h.Sum(s.macBuf[:0])
	return hmac.Equal(s.macBuf, want[:])
}

// maxMACs bounds the keyed hashes the subscription keeps: one per breaker
// it heard from lately.
const maxMACs = 4096

// learn keeps the announcement key of a watched breaker, lib.lua's field
// sk, as a reply or a read gave it: 40 hex digits, else nothing.
func (s *Store) learn(name string, key interface{}) {
	k, ok := key.(string)
	if !ok || len(k) != 2*sha1.Size {
		return
	}
	if _, err := hex.DecodeString(k); err != nil {
		return
	}
	s.mu.Lock()
	if len(s.watchers[name]) > 0 {
		s.announceKeys[name] = k
	}
	s.mu.Unlock()
}
