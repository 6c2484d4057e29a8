package retry

import (
	"context"
	"log/slog"
)

// LogEvents returns an OnEvent hook that logs a policy's events to l: an
// attempt that failed and will be retried at Debug, a gate's refusal at
// Info, giving up after a failure at Warn; successes are not logged. Chain
// it with another hook by calling both from one function.
func LogEvents(l *slog.Logger) func(Event) {
	return func(e Event) {
		attrs := []slog.Attr{slog.String("name", e.Name), slog.Int("attempt", e.Attempt),
			slog.Int("max_attempts", e.MaxAttempts)}
		switch {
		case e.Err == nil:
			return
		case e.GateRefused:
			attrs = append(attrs, slog.Any("error", e.Err), slog.Duration("retry_after", e.RetryAfter),
				slog.Bool("will_retry", e.WillRetry))
			l.LogAttrs(context.Background(), slog.LevelInfo, "retry: gate refused the attempt", attrs...)
		case e.WillRetry:
			attrs = append(attrs, slog.Any("error", e.Err), slog.String("kind", e.Kind.String()),
				slog.Duration("backoff", e.Backoff))
			l.LogAttrs(context.Background(), slog.LevelDebug, "retry: attempt failed, retrying", attrs...)
		default:
			attrs = append(attrs, slog.Any("error", e.Err), slog.String("kind", e.Kind.String()),
				slog.Duration("elapsed", e.Elapsed))
			l.LogAttrs(context.Background(), slog.LevelWarn, "retry: attempt failed, giving up", attrs...)
		}
	}
}
