package strategies

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/shardproxy/shardproxy/config"
)

// Build constructs every strategy of cfg, keyed by name. dir may be nil
// when cfg has no directory strategy; Build creates directory tables that
// do not exist yet.
func Build(ctx context.Context, cfg *config.Config, dir *DirectoryStore) (map[string]Strategy, error) {
	out := make(map[string]Strategy, len(cfg.Strategies))
	// Directories refer to fallbacks, so build the others first.
	for _, sc := range cfg.Strategies {
		if sc.Type == config.StrategyDirectory {
			continue
		}
		s, err := buildOne(sc, cfg)
		if err != nil {
			return nil, err
		}
		out[sc.Name] = s
	}
	for _, sc := range cfg.Strategies {
		if sc.Type != config.StrategyDirectory {
			continue
		}
		t, err := KeyTypeOf(sc.KeyType)
		if err != nil {
			return nil, fmt.Errorf("strategy %q: %w", sc.Name, err)
		}
		fallback, ok := out[sc.Fallback]
		switch {
		case dir == nil:
			return nil, fmt.Errorf("strategy %q: directory strategies need the metadata database", sc.Name)
		case !ok:
			return nil, fmt.Errorf("strategy %q: fallback %q is not a hash, range or consistent strategy", sc.Name, sc.Fallback)
		case fallback.KeyType() != t:
			return nil, fmt.Errorf("strategy %q: fallback %q has key type %s, want %s", sc.Name, sc.Fallback, fallback.KeyType(), t)
		}
		if err := dir.ensureTable(ctx, sc.Table); err != nil {
			return nil, fmt.Errorf("strategy %q: %w", sc.Name, err)
		}
		out[sc.Name] = &directoryStrategy{
			name:     sc.Name,
			keyType:  t,
			table:    sc.Table,
			fallback: fallback,
			// A directory can place a key on any shard, whatever its
			// fallback would choose.
			shards: cfg.ShardNames(),
			dir:    dir,
		}
	}
	return out, nil
}

func buildOne(sc config.Strategy, cfg *config.Config) (Strategy, error) {
	t, err := KeyTypeOf(sc.KeyType)
	if err != nil {
		return nil, fmt.Errorf("strategy %q: %w", sc.Name, err)
	}
	if sc.Type == config.StrategyHash || sc.Type == config.StrategyConsistent {
		if err := checkShards(sc, cfg); err != nil {
			return nil, err
		}
	}
	switch sc.Type {
	case config.StrategyHash:
		if isTimestamp(t) {
			return nil, fmt.Errorf("strategy %q: hash strategies take int, text or uuid keys", sc.Name)
		}
		return newHash(sc.Name, t, slices.Clone(sc.Shards)), nil
	case config.StrategyConsistent:
		return newConsistent(sc.Name, t, slices.Clone(sc.Shards), sc.Partitions), nil
	case config.StrategyRange:
		for _, r := range sc.Ranges {
			if cfg.ShardIndex(r.Shard) < 0 {
				return nil, fmt.Errorf("strategy %q: unknown shard %q", sc.Name, r.Shard)
			}
		}
		return newRange(sc.Name, t, sc.Ranges)
	}
	return nil, fmt.Errorf("strategy %q: unknown type %q", sc.Name, sc.Type)
}

func checkShards(sc config.Strategy, cfg *config.Config) error {
	if len(sc.Shards) == 0 {
		return fmt.Errorf("strategy %q: no shards", sc.Name)
	}
	var errs []error
	for i, s := range sc.Shards {
		if cfg.ShardIndex(s) < 0 {
			errs = append(errs, fmt.Errorf("strategy %q: unknown shard %q", sc.Name, s))
		}
		if slices.Index(sc.Shards, s) != i {
			errs = append(errs, fmt.Errorf("strategy %q: shard %q listed twice", sc.Name, s))
		}
	}
	return errors.Join(errs...)
}
