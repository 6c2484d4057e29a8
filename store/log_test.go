package store_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/breaker/backend"
	"github.com/breakwater-go/breakwater/internal/redistest"
	"github.com/breakwater-go/breakwater/store"
)

// logBuffer is a concurrency-safe log sink that signals each write.
type logBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case l.wrote <- struct{}{}:
	default:
	}
	return l.b.Write(p)
}

func (l *logBuffer) await(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(fleetWait)
	for {
		l.mu.Lock()
		got := l.b.String()
		l.mu.Unlock()
		if strings.Contains(got, s) {
			return
		}
		select {
		case <-l.wrote:
		case <-deadline:
			t.Fatalf("log lacks %q after %v; got:\n%s", s, fleetWait, got)
		}
	}
}

func TestStoreLogsSubscriptionLoss(t *testing.T) {
	srv := redistest.Start(t)
	buf := &logBuffer{wrote: make(chan struct{}, 1)}
	st, err := store.New(srv.Client(t), store.Options{Prefix: "logged", Logger: slog.New(slog.NewTextHandler(buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	notified := make(chan int64, 16)
	cancel := st.Watch("x", func(gen int64, _ *backend.Reply) {
		select {
		case notified <- gen:
		default:
		}
	})
	defer cancel()
	select { // subscribed
	case <-notified:
	case <-time.After(fleetWait):
		t.Fatalf("not subscribed within %v", fleetWait)
	}
	srv.Restart()
	buf.await(t, `level=WARN msg="store: subscription lost, resubscribing"`)
	buf.await(t, `level=INFO msg="store: resubscribed; breakers re-read their state" channel=logged:v1:events`)
}
