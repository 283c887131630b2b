package pgtest

import (
	"fmt"
	"testing"

	"golang.org/x/sync/errgroup"
)

// StartN starts n servers in parallel and returns them in order. Names are
// opts.Name (default "s") plus the index: s0, s1, ... A nonzero opts.Port
// gives server i the port opts.Port+i. Every server that started is
// stopped by t.Cleanup, also when another one failed; the server log tail
// is logged if the test failed. Errors end the test with t.Fatal.
func StartN(t testing.TB, n int, opts Options) []*Server {
	t.Helper()
	prefix := opts.Name
	if prefix == "" {
		prefix = "s"
	}
	servers := make([]*Server, n)
	var g errgroup.Group
	for i := range n {
		o := opts
		o.Name = fmt.Sprintf("%s%d", prefix, i)
		if opts.Port != 0 {
			o.Port = opts.Port + i
		}
		g.Go(func() error {
			s, err := Start(t.Context(), o)
			servers[i] = s
			return err
		})
	}
	err := g.Wait()
	for _, s := range servers {
		if s == nil {
			continue
		}
		t.Cleanup(func() {
			if t.Failed() && s.PID() != 0 {
				t.Logf("pgtest %s (port %d) log tail:\n%s", s.Name(), s.Port(), s.LogTail(30))
			}
			if err := s.Stop(); err != nil {
				t.Errorf("%v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	return servers
}
