package retry_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/retry"
)

func TestLogEvents(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "backoff" || a.Key == "elapsed" {
				return slog.Attr{}
			}
			return a
		}}))
	p := retry.Policy{Name: "GET /items", MaxAttempts: 2, BaseDelay: time.Nanosecond, MaxDelay: time.Nanosecond, OnEvent: retry.LogEvents(l)}
	_, _ = retry.Do(context.Background(), p, func(context.Context) (int, error) { return 0, errors.New("reset") })
	want := `level=DEBUG msg="retry: attempt failed, retrying" name="GET /items" attempt=1 max_attempts=2 error=reset kind=other
level=WARN msg="retry: attempt failed, giving up" name="GET /items" attempt=2 max_attempts=2 error=reset kind=other
`
	if got := buf.String(); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	buf.Reset()
	_, _ = retry.Do(context.Background(), p, func(context.Context) (int, error) { return 1, nil })
	if buf.Len() != 0 {
		t.Fatalf("a success was logged: %s", buf.String())
	}
}
