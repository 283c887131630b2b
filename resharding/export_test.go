package resharding

import (
	"context"
	"testing"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/strategies"
)

// Test-only access for the external tests (package resharding_test, which
// may import proxy; proxy's tests cannot be in this package's import graph).

// Locate is locate.
func Locate(ctx context.Context, s strategies.Strategy, text string) (string, error) {
	return locate(ctx, s, s.KeyType(), text)
}

// WithHook sets the test hook called at named points of a job.
func WithHook(o Options, f func(point string) error) Options {
	o.hook = f
	return o
}

// BuildStrats builds cfg's strategies (no directories).
func BuildStrats(t testing.TB, cfg *config.Config) map[string]strategies.Strategy {
	t.Helper()
	s, err := strategies.Build(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
