package transport

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/retry"
)

// logEvents returns a retry.Policy.OnEvent that logs each retry, then calls next.
func (t *Transport) logEvents(ctx context.Context, next func(retry.Event)) func(retry.Event) {
	return func(ev retry.Event) {
		if ev.WillRetry && !ev.GateRefused {
			t.log.LogAttrs(ctx, slog.LevelInfo, "breakwater: retrying request",
				slog.String("url", ev.Name),
				slog.Int("attempt", ev.Attempt),
				slog.Int("max_attempts", ev.MaxAttempts),
				slog.String("kind", ev.Kind.String()),
				slog.Duration("backoff", ev.Backoff),
				slog.String("error", ev.Err.Error()))
		}
		if next != nil {
			next(ev)
		}
	}
}

// logResult logs a request that failed for good: refused by its breaker
// (Debug: during an outage, every request is), or ending in an error or a
// failed response (Warn).
func (t *Transport) logResult(ctx context.Context, req *http.Request, attempts int, resp *http.Response, err error) {
	attrs := []slog.Attr{
		slog.String("url", req.URL.Redacted()),
		slog.String("method", req.Method),
		slog.Int("attempts", attempts),
	}
	var open *breaker.OpenError
	switch {
	case err != nil && errors.As(err, &open):
		attrs = append(attrs, slog.String("breaker", open.Name), slog.Duration("next_probe_in", open.NextProbeIn),
			slog.String("error", err.Error()))
		t.log.LogAttrs(ctx, slog.LevelDebug, "breakwater: breaker refused request", attrs...)
	case err != nil:
		attrs = append(attrs, slog.String("kind", retry.KindOf(err).String()), slog.String("error", err.Error()))
		t.log.LogAttrs(ctx, slog.LevelWarn, "breakwater: request failed", attrs...)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		attrs = append(attrs, slog.Int("status", resp.StatusCode))
		t.log.LogAttrs(ctx, slog.LevelWarn, "breakwater: request failed", attrs...)
	}
}
