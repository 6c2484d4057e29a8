package breaker

import (
	"context"
	"log/slog"
)

// logEvent returns a listener that logs a breaker's events to l:
// transitions and the store's recovery at Info, the store's loss at Warn.
func logEvent(l *slog.Logger) func(Event) {
	return func(e Event) {
		ctx := context.Background()
		switch e.Kind {
		case StateChanged:
			attrs := []slog.Attr{
				slog.String("breaker", e.Name),
				slog.String("from", e.From.String()),
				slog.String("to", e.To.String()),
				slog.String("reason", e.Reason),
				slog.Int64("generation", e.Generation),
				slog.String("by", e.Instance),
				slog.Bool("local", e.Local),
			}
			if e.To == Open {
				attrs = append(attrs, slog.Duration("next_probe_in", e.NextProbeIn),
					slog.Uint64("failures", e.Counts.PreviousFailures))
			}
			// decider is local for the transitions of the local breaker
			// that decides while the store is unreachable.
			attrs = append(attrs, slog.String("decider", e.Decider.String()))
			l.LogAttrs(ctx, slog.LevelInfo, "breaker: state changed", attrs...)
		case StoreUnavailable:
			l.LogAttrs(ctx, slog.LevelWarn, "breaker: store unavailable, deciding locally",
				slog.String("breaker", e.Name), slog.String("fallback", e.Fallback.String()),
				slog.String("state", e.To.String()), slog.Any("error", e.Err))
		case StoreRecovered:
			l.LogAttrs(ctx, slog.LevelInfo, "breaker: store recovered",
				slog.String("breaker", e.Name), slog.String("state", e.To.String()),
				slog.Uint64("unreported", e.Unreported))
		}
	}
}
