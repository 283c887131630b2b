package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/strategies"
)

// Assembly is the running form of one config: its directory store,
// strategies, router and pools, bundled as the Runtime sessions use.
type Assembly struct {
	cfg   *config.Config
	dir   *strategies.DirectoryStore
	pools *pool.Cluster
	twopc *twoPC // decision log and recovery; nil without two_phase_commit
	rt    *Runtime
}

// Runtime returns what the server needs to route with this assembly.
func (a *Assembly) Runtime() *Runtime { return a.rt }

// Assemble builds the runtime for cfg, reusing the pools and directory
// store of prev (nil at startup) where the config did not change them.
func Assemble(ctx context.Context, cfg *config.Config, prev *Assembly, log *slog.Logger) (*Assembly, error) {
	a := &Assembly{cfg: cfg}
	if needsDirectory(cfg) {
		if prev != nil && prev.dir != nil && prev.cfg.Metadata.DSN == cfg.Metadata.DSN {
			a.dir = prev.dir
			// A new map (a reload or a resharding epoch, which may have
			// moved directory entries) starts with a cold cache.
			a.dir.Forget()
		} else {
			dir, err := strategies.OpenDirectory(ctx, cfg.Metadata.DSN, log)
			if err != nil {
				return nil, fmt.Errorf("metadata database: %w", err)
			}
			a.dir = dir
		}
	}
	strats, err := strategies.Build(ctx, cfg, a.dir)
	if err != nil {
		a.closeNew(prev)
		return nil, err
	}
	r, err := router.New(cfg, strats)
	if err != nil {
		a.closeNew(prev)
		return nil, err
	}
	if prev != nil && samePools(prev.cfg, cfg) {
		a.pools = prev.pools
	} else {
		a.pools, err = pool.NewCluster(cfg.Shards, pool.Options{
			Size:           cfg.Pool.Size,
			AcquireTimeout: time.Duration(cfg.Pool.AcquireTimeoutMillis) * time.Millisecond,
			// ProbeAfter 0: an idle connection is probed before reuse
			// unless the pool's hang-up watch vouches for it (released a
			// moment ago, see pool.watchLag). Skipping the probe without the
			// watch would save the same recv per transaction but hand out
			// several dead backends in a row after a shard restart, each
			// failing a client statement.
			Logger: log,
		})
		if err != nil {
			a.closeNew(prev)
			return nil, err
		}
	}
	a.rt, err = NewRuntime(cfg, r, a.pools)
	if err != nil {
		a.closeNew(prev)
		return nil, err
	}
	if cfg.TwoPhaseCommit {
		if prev != nil && prev.twopc != nil && prev.cfg.Metadata.DSN == cfg.Metadata.DSN {
			a.twopc = prev.twopc // transactions of the old runtime still commit through it
		} else if a.twopc, err = openTwoPC(ctx, cfg.Metadata.DSN, cfg.TwoPhaseGrace(), log); err != nil {
			a.closeNew(prev)
			return nil, fmt.Errorf("two-phase commit: %w", err)
		} else {
			defer a.twopc.start()
		}
		names := make([]string, len(cfg.Shards))
		for i, sh := range cfg.Shards {
			names[i] = sh.Name
		}
		a.twopc.use(names, a.pools)
		a.rt.twopc = a.twopc
	}
	return a, nil
}

// closeNew releases what a failed assemble opened and prev does not share.
func (a *Assembly) closeNew(prev *Assembly) {
	if a.dir != nil && (prev == nil || prev.dir != a.dir) {
		a.dir.Close()
	}
	if a.pools != nil && (prev == nil || prev.pools != a.pools) {
		a.pools.Close()
	}
	if a.twopc != nil && (prev == nil || prev.twopc != a.twopc) {
		a.twopc.close()
	}
}

// Retire closes what a replaced assembly owns and next does not reuse.
// Pools close idle connections now and the rest as transactions end.
func (a *Assembly) Retire(next *Assembly) {
	if a.pools != next.pools {
		a.pools.Close()
	}
	if a.dir != nil && a.dir != next.dir {
		a.dir.Close()
	}
	if a.twopc != nil && a.twopc != next.twopc {
		a.twopc.close()
	}
}

func needsDirectory(cfg *config.Config) bool {
	for _, s := range cfg.Strategies {
		if s.Type == config.StrategyDirectory {
			return true
		}
	}
	return false
}

func samePools(a, b *config.Config) bool {
	return slices.Equal(a.Shards, b.Shards) && a.Pool == b.Pool
}

// Close closes the pools and the directory store.
func (a *Assembly) Close() {
	a.pools.Close()
	if a.dir != nil {
		a.dir.Close()
	}
	if a.twopc != nil {
		a.twopc.close()
	}
}
