package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-redsync/redsync/v4"
	goredis "github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// redsyncStore is the gobreaker.SharedDataStore that sony/gobreaker ships
// for Redis (RedisStore in v2.1.0, package v2/redis since): a redsync mutex
// with a 5 s expiry for Lock and Unlock, GET and SET for the state. Theirs
// keeps the held mutexes in a map without a lock, so concurrent Executes in
// one process race on it; this one guards the map and keeps a mutex per
// holder, and is otherwise the same, command for command.
type redsyncStore struct {
	ctx    context.Context
	client redis.UniversalClient
	rs     *redsync.Redsync

	mu   sync.Mutex
	held map[string]*redsync.Mutex
}

var _ gobreaker.SharedDataStore = (*redsyncStore)(nil)

func newRedsyncStore(client redis.UniversalClient) *redsyncStore {
	return &redsyncStore{
		ctx:    context.Background(),
		client: client,
		rs:     redsync.New(goredis.NewPool(client)),
		held:   map[string]*redsync.Mutex{},
	}
}

// Lock takes the fleet-wide lock called name, waiting as redsync does
// (32 tries, 50 to 250 ms apart) while another holder has it.
func (s *redsyncStore) Lock(name string) error {
	m := s.rs.NewMutex(name, redsync.WithExpiry(5*time.Second))
	if err := m.Lock(); err != nil {
		return err
	}
	// The Redis lock is exclusive, so only one holder of name is here.
	s.mu.Lock()
	s.held[name] = m
	s.mu.Unlock()
	return nil
}

// Unlock releases the lock called name taken by Lock.
func (s *redsyncStore) Unlock(name string) error {
	s.mu.Lock()
	m := s.held[name]
	delete(s.held, name)
	s.mu.Unlock()
	if m == nil {
		return fmt.Errorf("bench: unlock %q: not locked", name)
	}
	ok, err := m.Unlock()
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("bench: unlock " + name + ": lock lost")
	}
	return nil
}

// GetData returns the state stored under name; nil when there is none.
func (s *redsyncStore) GetData(name string) ([]byte, error) {
	b, err := s.client.Get(s.ctx, name).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return b, err
}

// SetData stores the state under name.
func (s *redsyncStore) SetData(name string, data []byte) error {
	return s.client.Set(s.ctx, name, data, 0).Err()
}
