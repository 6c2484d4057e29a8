package store

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Watch implements backend.Store. The first Watch starts the store's one
// subscription to its channel; notify is called from the subscription's
// goroutine with the generation of each announced transition of name, and
// with 0 after every (re)subscription, when announcements may have been
// missed. Messages that do not parse are dropped: they change nothing.
func (s *Store) Watch(name string, notify func(generation int64)) (cancel func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return func() {}
	}
	id := s.nextID
	s.nextID++
	if s.watchers[name] == nil {
		s.watchers[name] = map[int]func(int64){}
	}
	s.watchers[name][id] = notify
	if s.subStop == nil {
		ctx, stop := context.WithCancel(context.Background())
		s.subStop = stop
		s.subDone = make(chan struct{})
		go s.subscribe(ctx, s.subDone)
	}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.watchers[name], id)
		if len(s.watchers[name]) == 0 {
			delete(s.watchers, name)
		}
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
			gen, name, ok := parseAnnouncement(m.Payload)
			if ok {
				s.notify(name, gen)
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

// parseAnnouncement reads "<generation> <name>".
func parseAnnouncement(payload string) (gen int64, name string, ok bool) {
	g, name, found := strings.Cut(payload, " ")
	if !found || name == "" {
		return 0, "", false
	}
	gen, err := strconv.ParseInt(g, 10, 64)
	if err != nil || gen <= 0 {
		return 0, "", false
	}
	return gen, name, true
}

func (s *Store) notify(name string, gen int64) {
	s.mu.Lock()
	fns := make([]func(int64), 0, len(s.watchers[name]))
	for _, fn := range s.watchers[name] {
		fns = append(fns, fn)
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn(gen)
	}
}

func (s *Store) notifyAll() {
	s.mu.Lock()
	var fns []func(int64)
	for _, ws := range s.watchers {
		for _, fn := range ws {
			fns = append(fns, fn)
		}
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn(0)
	}
}
