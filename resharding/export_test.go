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

// BuildStrats builds cfg's strategies, directories included.
func BuildStrats(t testing.TB, cfg *config.Config) map[string]strategies.Strategy {
	return buildAll(t, cfg)
}

// Owner is the shard the proxy routes a read of key in table to under
// cfg's strategies (strats from BuildStrats), as the proxy does.
func Owner(ctx context.Context, strats map[string]strategies.Strategy, cfg *config.Config, table, key string) (string, error) {
	s := strats[cfg.TableByName(table).Strategy]
	k, err := strategies.ParseKey(s.KeyType(), key)
	if err != nil {
		return "", err
	}
	return s.Locate(ctx, k, strategies.Read)
}
