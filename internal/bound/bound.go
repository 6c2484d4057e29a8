// Package bound runs go-redis calls so that they return by the time their
// context is done, whatever the client's options. The store runs every
// Redis call through it, and so does the breakwater command.
//
// go-redis bounds a call's socket reads and writes by its context only when
// the client has ContextTimeoutEnabled; otherwise a Redis that hangs (frozen,
// or its host gone without a reset) holds the call for the client's
// ReadTimeout: 3s by default, for ever when it is -1.
package bound

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// ContextAware reports whether client bounds socket I/O by a call's context,
// so that Call need not.
func ContextAware(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

// Call runs fn(ctx) and returns its error, or ctx.Err() once ctx is done if
// fn has not returned by then (see Value).
func Call(ctx context.Context, ctxAware bool, fn func(ctx context.Context) error) error {
	_, err := Value(ctx, ctxAware, func(ctx context.Context) (struct{}, error) { return struct{}{}, fn(ctx) })
	return err
}

// Value runs fn(ctx) and returns what it returns, or ctx.Err() once ctx is
// done if fn has not returned by then. When ctxAware (see ContextAware) fn
// runs on the caller's goroutine, which the client itself frees in time.
// Otherwise fn runs on a goroutine of its own, which is abandoned when ctx
// is done: it ends when the client's call does (Redis answers, the read
// times out, or the connection is closed, as Close of the client does).
// When Value returns ctx.Err() itself, fn may still be running: the caller
// must not read what fn writes, other than through its results.
func Value[T any](ctx context.Context, ctxAware bool, fn func(ctx context.Context) (T, error)) (T, error) {
	if ctxAware {
		return fn(ctx)
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1) // buffered: an abandoned fn never blocks on it
	go func() {
		v, err := fn(ctx)
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		select {
		case r := <-ch:
			return r.v, r.err
		default:
			var zero T
			return zero, ctx.Err()
		}
	}
}
