package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/breaker/backend"
)

// stateFields are the fields of the state hash a plain read needs (lib.lua).
var stateFields = []string{"st", "gen", "probe_at", "from", "why", "by", "at",
	"ok", "ko", "cf", "hs", "tok", "tko", "tslow", "tstale", "trips", "pko", "sk"}

// maxGeneration bounds generations and counts: integers in [0, 2^53).
const maxGeneration = 1 << 53

// maxGen bounds the generation field: it is Redis's clock in ms when the
// breaker was made plus one per transition, so one of 2^52 or more is
// corrupt (as lib.lua's MAXGEN).
const maxGen = 1 << 52

// maxClockGap bounds how much later than a read's TIME a transition read
// with it may be (ms): one pipeline's time in Redis, and on a Cluster the
// gap between the clocks of two nodes (TIME goes to any of them). A state
// from further ahead says that Redis's clock went back; it is taken as it
// is.
const maxClockGap = 1000

// Read implements backend.Store. Without Request.Full it reads the state
// hash with HMGET and Redis's clock with TIME, in one round trip and
// without a script: it decides nothing and writes nothing. With Full it runs
// the read script, which also sums the window and creates the breaker when
// there is none.
func (s *Store) Read(ctx context.Context, req backend.Request) (backend.Reply, error) {
	if req.Full {
		return s.run(ctx, "read", s.read, req)
	}
	ops := []backend.Op{{Kind: backend.OpRead, Request: req}}
	s.Do(ctx, ops)
	return ops[0].Reply, ops[0].Err
}

// Do implements backend.Store: the ops go to Redis in one pipeline (on a
// Cluster, one per node), reads as HMGET, records as EVALSHA of the fast
// script where it may count them (see fastArgs) and of the record script
// otherwise. Records the fast script leaves to the full one go in a second
// pipeline.
func (s *Store) Do(ctx context.Context, ops []backend.Op) {
	s.do(ctx, ops, true)
}

// do carries out Do; fast allows the fast script.
func (s *Store) do(ctx context.Context, ops []backend.Op, fast bool) {
	if len(ops) == 0 {
		return
	}
	if s.isClosed() {
		for i := range ops {
			ops[i].Err = ErrClosed
		}
		return
	}
	cmds := make([]redis.Cmder, len(ops))
	valid := false
	for i := range ops {
		op := &ops[i]
		op.Reply, op.Err = backend.Reply{}, nil
		if err := breaker.CheckName(op.Request.Name); err != nil {
			op.Err = err
			continue
		}
		if op.Kind != backend.OpRead && op.Kind != backend.OpRecord {
			op.Err = fmt.Errorf("breaker %q: store: unknown op %d", op.Request.Name, op.Kind)
			continue
		}
		valid = true
	}
	if !valid {
		return
	}
	// The pipeline is built here; only its Exec runs on the bounded call,
	// which may be abandoned when Redis hangs (then nothing of it is read).
	pipe := s.client.Pipeline()
	var clock *redis.TimeCmd // reads need Redis's clock; reports bring their own
	for i := range ops {
		if ops[i].Err == nil && ops[i].Kind == backend.OpRead {
			clock = pipe.Time(ctx)
			break
		}
	}
	argv := make([][]interface{}, len(ops)) // the records' script arguments
	viaFast := make([]bool, len(ops))       // the records sent to the fast script
	for i := range ops {
		op := &ops[i]
		if op.Err != nil {
			continue
		}
		keys := s.Keys(op.Request.Name)
		if op.Kind == backend.OpRead {
			cmds[i] = pipe.HMGet(ctx, keys[0], stateFields...)
			continue
		}
		renew := s.renewDue(op.Request.Name)
		if args, ok := fastArgs(op.Request, renew); ok && fast {
			argv[i], viaFast[i] = args, true
			cmds[i] = s.fast.EvalSha(ctx, pipe, keys[:1], args...)
		} else {
			argv[i] = s.args(op.Request, s.recordArgs(op.Request, renew)...)
			cmds[i] = s.record.EvalSha(ctx, pipe, keys, argv[i]...)
		}
	}
	var firstKeys []string
	for i := range ops {
		if ops[i].Err == nil {
			firstKeys = s.Keys(ops[i].Request.Name)
			break
		}
	}
	err := s.runner.call(ctx, firstKeys, func(ctx context.Context) error {
		return s.runner.bounded(ctx, func(ctx context.Context) error {
			_, execErr := pipe.Exec(ctx)
			if execErr != nil && execErr != redis.Nil && !perOp(execErr) {
				return execErr // the connection's or the login's: every op's
			}
			if clock != nil && clock.Err() != nil {
				return clock.Err() // TIME failed: so did the connection (or the login)
			}
			for _, c := range cmds {
				if c != nil && c.Err() != nil && c.Err() != redis.Nil && !perOp(c.Err()) {
					return c.Err() // the connection's or the login's: every op's
				}
			}
			return nil
		})
	})
	if err != nil {
		for i := range ops {
			if ops[i].Err == nil {
				ops[i].Err = fmt.Errorf("breaker %q: %s: %w", ops[i].Request.Name, opNames[ops[i].Kind], err)
			}
		}
		return
	}
	var now time.Time
	if clock != nil {
		now, _ = clock.Result()
	}
	var full []int // the ops the fast script left to the full one
	for i := range ops {
		op := &ops[i]
		if op.Err != nil {
			continue
		}
		if viaFast[i] {
			res, err := cmds[i].(*redis.Cmd).Result()
			if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
				// The script cache was flushed: Run loads it again.
				res, err = s.runner.run(ctx, s.fast, s.Keys(op.Request.Name)[:1], argv[i])
			}
			switch {
			case err == nil && res == int64(1):
				op.Reply = shortReply(op.Request)
			case unasked(err):
				op.Err = fmt.Errorf("breaker %q: %s: %w", op.Request.Name, opNames[op.Kind], err)
			default:
				full = append(full, i) // its verdict, or the error that names the cause
			}
			continue
		}
		switch c := cmds[i].(type) {
		case *redis.SliceCmd:
			if err := c.Err(); err != nil {
				if isCorrupt(err) {
					err = fmt.Errorf("%w: %w", ErrCorrupt, err)
				}
				op.Err = err
			} else {
				op.Reply, op.Err = s.parseState(op.Request.Name, now, c.Val())
			}
		case *redis.Cmd:
			res, err := c.Result()
			if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
				// The script cache was flushed: Run loads it again.
				res, err = s.runner.run(ctx, s.record, s.Keys(op.Request.Name), argv[i])
			} else if err != nil && isCorrupt(err) {
				err = fmt.Errorf("%w: %w", ErrCorrupt, err)
			}
			if err == nil {
				op.Reply, err = parseReply(res)
			}
			if err == nil {
				err = s.checkSeq(op.Request, op.Reply)
			}
			if err == nil {
				s.learn(op.Request.Name, replyKey(res))
			}
			op.Err = err
		}
		if op.Err != nil {
			op.Err = fmt.Errorf("breaker %q: %s: %w", op.Request.Name, opNames[op.Kind], s.nameWrongType(op.Request.Name, op.Err))
		}
	}
	if len(full) > 0 {
		sub := make([]backend.Op, len(full))
		for j, i := range full {
			sub[j] = ops[i]
		}
		s.do(ctx, sub, false)
		for j, i := range full {
			ops[i].Reply, ops[i].Err = sub[j].Reply, sub[j].Err
		}
	}
}

// perOp tells an error of one op (a script's, foreign data) from one that
// befalls the whole round (connection, login, outage).
func perOp(err error) bool {
	msg := err.Error()
	return isCorrupt(err) || strings.Contains(msg, "BWARGS") || strings.HasPrefix(msg, "NOSCRIPT") ||
		strings.Contains(msg, "user_script")
}

var opNames = map[backend.OpKind]string{backend.OpRead: "read", backend.OpRecord: "record"}

// parseState turns the state hash's fields (stateFields) into a reply, as
// of Redis's clock now. A breaker the store does not hold reads as closed,
// generation 0. Every value is checked; a value this layout does not know
// is an error matching ErrCorrupt that names the key and the field.
func (s *Store) parseState(name string, now time.Time, v []interface{}) (backend.Reply, error) {
	key := s.Keys(name)[0]
	if len(v) != len(stateFields) {
		return backend.Reply{}, fmt.Errorf("%w: HMGET %s: got %d fields, want %d", ErrProtocol, key, len(v), len(stateFields))
	}
	if v[0] == nil && v[1] == nil {
		return backend.Reply{Verdict: backend.VerdictOK, State: backend.Closed, From: backend.Closed,
			ServerTime: time.UnixMilli(now.UnixMilli())}, nil
	}
	var bad error
	str := func(i int) string {
		s, ok := v[i].(string)
		if !ok && bad == nil {
			bad = fmt.Errorf("%w: state hash %s lacks field %s", ErrCorrupt, key, stateFields[i])
		}
		return s
	}
	num := func(i int) int64 {
		x := str(i)
		n, err := strconv.ParseInt(x, 10, 64)
		if (err != nil || n < 0 || n >= maxGeneration) && bad == nil {
			bad = fmt.Errorf("%w: state hash %s field %s is %q, want an integer in [0, 2^53)", ErrCorrupt, key, stateFields[i], truncate(x))
		}
		return n
	}
	state := func(i int) backend.State {
		x := str(i)
		st, ok := states[x]
		if !ok && bad == nil {
			bad = fmt.Errorf("%w: state hash %s field %s has unknown state %q", ErrCorrupt, key, stateFields[i], truncate(x))
		}
		return st
	}
	nowMS := now.UnixMilli()
	r := backend.Reply{Verdict: backend.VerdictOK, ServerTime: time.UnixMilli(nowMS)}
	r.State = state(0)
	r.Generation = num(1)
	probeAt := num(2)
	r.From = state(3)
	r.Reason = str(4)
	r.By = str(5)
	at := num(6)
	if at > nowMS && at-nowMS < maxClockGap {
		// Written after TIME answered: another client's script ran between
		// the pipeline's TIME and HMGET (or, on a Cluster, TIME came from
		// another node, whose clock is behind). The transition's own clock
		// is the later one, or a trip would read as open for longer than
		// it is.
		nowMS = at
		r.ServerTime = time.UnixMilli(nowMS)
	}
	r.InState = msDuration(nowMS - at)
	c := &r.Counts
	c.Successes = uint64(num(7))
	c.Failures = uint64(num(8))
	c.ConsecutiveFailures = uint64(num(9))
	c.ProbeSuccesses = uint64(num(10))
	c.TotalSuccesses = uint64(num(11))
	c.TotalFailures = uint64(num(12))
	c.TotalSlowCalls = uint64(num(13))
	c.TotalStale = uint64(num(14))
	c.Trips = uint64(num(15))
	c.PreviousFailures = uint64(num(16))
	if bad == nil && r.Generation == 0 {
		bad = fmt.Errorf("%w: state hash %s field gen is 0, want a positive integer", ErrCorrupt, key)
	}
	if bad == nil && r.Generation >= maxGen {
		bad = fmt.Errorf("%w: state hash %s field gen is %d, want below 2^52", ErrCorrupt, key, r.Generation)
	}
	if bad != nil {
		return backend.Reply{}, bad
	}
	s.learn(name, v[17])
	switch r.State {
	case backend.Open:
		r.Wait = msDuration(max(0, probeAt-nowMS))
	case backend.ForcedOpen:
		r.Wait = -1
	}
	return r, nil
}

// truncate shortens a foreign value for an error message.
func truncate(s string) string {
	if len(s) <= 40 {
		return s
	}
	return s[:40] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
