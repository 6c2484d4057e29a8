package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// checkClient returns an error when client is nil, or a nil pointer (or
// other nil value) held in a non-nil interface, such as a *redis.Client
// variable that was never assigned: using it would panic on the first call.
func checkClient(fn string, client redis.UniversalClient) error {
	if client == nil {
		return fmt.Errorf("store: %s needs a redis client, got nil", fn)
	}
	v := reflect.ValueOf(client)
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		if v.IsNil() {
			return fmt.Errorf("store: %s needs a redis client, got a nil %T", fn, client)
		}
	}
	return nil
}

// secrets returns the passwords in client's options, which no error of the
// store may print.
func secrets(client redis.UniversalClient) []string {
	var s []string
	switch c := client.(type) {
	case *redis.Client:
		s = append(s, c.Options().Password)
	case *redis.ClusterClient:
		s = append(s, c.Options().Password)
	case *redis.Ring:
		s = append(s, c.Options().Password)
	}
	out := s[:0]
	for _, p := range s {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// prober asks whether Redis answers again, for the health breaker's
// background probe. It returns nil once Redis answered anything but an
// error saying it is not serving yet (LOADING, BUSY, ...).
type prober func(ctx context.Context, key string) error

// newProber returns the probe for client. A *redis.Client (also one made by
// NewFailoverClient) and the master of a key's slot in a
// *redis.ClusterClient are probed on a connection of their own, dialled with
// the client's own Dialer (TLS and all) outside its pool: such a probe costs
// no pool connection, and a failed dial leaves no line in go-redis's log.
// Other clients are probed with a PING through the client.
func newProber(client redis.UniversalClient) prober {
	switch c := client.(type) {
	case *redis.Client:
		return func(ctx context.Context, _ string) error { return rawPing(ctx, c.Options()) }
	case *redis.ClusterClient:
		return func(ctx context.Context, key string) error {
			m, err := c.MasterForKey(ctx, key)
			if err == nil {
				err = rawPing(ctx, m.Options())
			}
			if err != nil {
				// Learn a failover as soon as the cluster has made it.
				c.ReloadState(ctx)
			}
			return err
		}
	}
	return func(ctx context.Context, _ string) error {
		err := client.Ping(ctx).Err()
		var rerr redis.Error
		if err != nil && errors.As(err, &rerr) && !isOutage(err) {
			return nil // answered: NOAUTH, NOPERM...
		}
		return err
	}
}

// rawPing dials the server of opts with its Dialer, sends PING and reads
// the first line of the answer. Any answer counts, even an error such as
// NOAUTH (the probe does not authenticate), except one saying that the
// server is not serving yet.
func rawPing(ctx context.Context, opts *redis.Options) error {
	dial := opts.Dialer
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	network := opts.Network
	if network == "" {
		network = "tcp"
	}
	conn, err := dial(ctx, network, opts.Addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	} else {
		_ = conn.SetDeadline(time.Now().Add(DefaultTimeout))
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReaderSize(conn, 512).ReadString('\n')
	if err != nil {
		return err
	}
	return pingAnswer(line)
}

// pingAnswer returns nil when line, the first line of a reply to PING,
// shows a server that serves.
func pingAnswer(line string) error {
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "+"):
		return nil
	case strings.HasPrefix(line, "-"):
		err := redisReplyError(line[1:])
		if isOutage(err) {
			return err
		}
		return nil
	}
	return fmt.Errorf("%w: PING answered %q", ErrProtocol, line)
}

// redisReplyError is an error reply read by rawPing; it satisfies
// redis.Error so that it is classified as go-redis's own would be.
type redisReplyError string

func (e redisReplyError) Error() string { return string(e) }

// RedisError marks the error as a reply of Redis (redis.Error).
func (redisReplyError) RedisError() {}
