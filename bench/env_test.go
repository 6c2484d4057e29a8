package bench

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

// commandCounter is a go-redis hook counting every command a client sends,
// each command of a pipeline included.
type commandCounter struct {
	n atomic.Int64
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// envs numbers environments, so that each has keys of its own.
var envs atomic.Int64

// env is what one case sets up in: the shared server, a key prefix of its
// own, and a count of the commands of the instance being measured.
type env struct {
	tb     testing.TB
	srv    *server
	prefix string
	cmds   *commandCounter
	hook   redis.Hook // another hook of the measured client, if any
}

func newEnv(tb testing.TB, srv *server) *env {
	return &env{tb: tb, srv: srv, prefix: "bench" + strconv.FormatInt(envs.Add(1), 10), cmds: &commandCounter{}}
}

// client returns a client of the server, closed when the test ends; the
// commands of a measured client are counted.
func (e *env) client(measured bool) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: e.srv.addr})
	if measured {
		c.AddHook(e.cmds)
		if e.hook != nil {
			c.AddHook(e.hook)
		}
	}
	e.tb.Cleanup(func() { _ = c.Close() })
	return c
}
