package breaker

import (
	"context"
	"errors"
)

// ExecuteWithFallback runs fn under b, as Execute does, and runs fallback
// instead when b rejects the call (its error matches ErrOpen: open, forced
// open, every probe place taken, or failing closed while the store is
// unreachable). fallback gets the rejection, an *OpenError saying when the
// next probe is due, and its result is returned as it is: return a cached
// value, a default, or an error that tells the caller what to do.
//
// fallback does not run when fn ran and failed: fn's result and error are
// returned as Execute returns them (fall back on those in fn itself). Nor
// does it run for ErrClosed or for ctx's error. A nil fallback makes
// ExecuteWithFallback the same as Execute.
func ExecuteWithFallback[T any](ctx context.Context, b *Breaker, fn func(context.Context) (T, error),
	fallback func(ctx context.Context, rejected error) (T, error)) (T, error) {
	ran := false
	v, err := Execute(ctx, b, func(ctx context.Context) (T, error) {
		ran = true
		return fn(ctx)
	})
	if err != nil && !ran && fallback != nil && errors.Is(err, ErrOpen) {
		return fallback(ctx, err)
	}
	return v, err
}
