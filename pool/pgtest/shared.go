package pgtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Shared is a set of servers a test binary starts once, on first use, and
// shares between its tests; each test makes fresh databases on them (see
// DatabaseName), so tests do not see each other's tables. Starting
// servers is what a test binary spends most of its set-up on; sharing
// them keeps packages with many integration tests fast. The package's
// TestMain stops them with StopAll.
type Shared struct {
	names   []string
	once    sync.Once
	servers []*Server
	err     error
	seq     atomic.Int64
}

// NewShared names the servers; nothing starts until Servers is called.
func NewShared(names ...string) *Shared { return &Shared{names: names} }

// Servers returns the servers in the order of their names, starting them
// (in parallel: initdb dominates) on the first call. A failure to start
// fails every test that asks.
func (s *Shared) Servers(t testing.TB) []*Server {
	t.Helper()
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		s.servers = make([]*Server, len(s.names))
		errs := make([]error, len(s.names))
		var wg sync.WaitGroup
		for i, name := range s.names {
			wg.Go(func() { s.servers[i], errs[i] = Start(ctx, Options{Name: name}) })
		}
		wg.Wait()
		s.err = errors.Join(errs...)
	})
	if s.err != nil {
		t.Fatalf("starting Postgres servers: %v", s.err)
	}
	return s.servers
}

// DatabaseName returns prefix followed by a number no other caller in
// this test binary gets.
func (s *Shared) DatabaseName(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, s.seq.Add(1))
}
