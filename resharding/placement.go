package resharding

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/strategies"
)

// placement says, for one moving table, where its rows are under the
// current map and where they go under the target: either two strategies
// (the maps differ), or directory keys the operator reassigns (the maps
// may be the same; the directory's entries change). Every phase asks it,
// so the copy, the stream, the verification, the cutover's delete and the
// abort agree on what moves.
type placement interface {
	// sources are the shards that may lose rows, whether or not they hold
	// any now: rows written there during the job must be streamed too.
	sources() []string
	// destinations are the shards that may receive rows.
	destinations() []string
	// newOwner is where the target puts a row with key (Postgres' text
	// form) that lives on here now; here when it stays.
	newOwner(ctx context.Context, key, here string) (string, error)
	// oldOwner is where the current map put a row with key that lives on
	// here under the target (here when it did not move).
	oldOwner(ctx context.Context, key, here string) (string, error)
	// newOwnerSQL and oldOwnerSQL are the same as SQL expressions over
	// keyExpr; ok is false when only Go can compute them.
	newOwnerSQL(keyExpr, here string) (expr string, ok bool)
	oldOwnerSQL(keyExpr, here string) (expr string, ok bool)
	// keyType is the type of the shard key.
	keyType() strategies.KeyType
}

// strategyPlacement moves the keys whose owner differs between two
// strategies.
type strategyPlacement struct {
	old, next       strategies.Strategy
	oldCfg, nextCfg *config.Strategy
	srcs            []string
}

func newStrategyPlacement(old, next strategies.Strategy, oldCfg, nextCfg *config.Strategy) (*strategyPlacement, error) {
	p := &strategyPlacement{old: old, next: next, oldCfg: oldCfg, nextCfg: nextCfg}
	if oldCfg.Type == config.StrategyRange && nextCfg.Type == config.StrategyRange {
		srcs, err := rangeLosers(old, next, oldCfg, nextCfg)
		if err != nil {
			return nil, err
		}
		p.srcs = srcs
	} else {
		// Hash and consistent placements that differ take keys from every
		// shard (adding a shard to a ring takes some from each).
		p.srcs = old.Shards()
	}
	return p, nil
}

func (p *strategyPlacement) sources() []string           { return p.srcs }
func (p *strategyPlacement) destinations() []string      { return p.next.Shards() }
func (p *strategyPlacement) keyType() strategies.KeyType { return p.next.KeyType() }

func (p *strategyPlacement) newOwner(ctx context.Context, key, _ string) (string, error) {
	return locate(ctx, p.next, p.next.KeyType(), key)
}

func (p *strategyPlacement) oldOwner(ctx context.Context, key, _ string) (string, error) {
	return locate(ctx, p.old, p.old.KeyType(), key)
}

func (p *strategyPlacement) newOwnerSQL(keyExpr, _ string) (string, bool) {
	return ownerSQL(p.nextCfg, keyExpr)
}

func (p *strategyPlacement) oldOwnerSQL(keyExpr, _ string) (string, bool) {
	return ownerSQL(p.oldCfg, keyExpr)
}

// rangeLosers are the shards of a range split or merge that lose keys.
// Owners are constant between consecutive bounds of either map, so the
// owner at every bound (and below the lowest) decides it exactly.
func rangeLosers(old, next strategies.Strategy, oldCfg, nextCfg *config.Strategy) ([]string, error) {
	lose := map[string]bool{}
	if first := func(c *config.Strategy) string { return c.Ranges[0].Shard }; first(oldCfg) != first(nextCfg) {
		lose[first(oldCfg)] = true // the interval below every bound
	}
	for _, c := range []*config.Strategy{oldCfg, nextCfg} {
		for _, r := range c.Ranges {
			if r.Unbounded {
				continue
			}
			k, err := strategies.ParseKeyIn(old.KeyType(), r.Upper, time.UTC)
			if err != nil {
				return nil, fmt.Errorf("range bound %q: %w", r.Upper, err)
			}
			o, errOld := old.Locate(context.Background(), k, strategies.Write)
			n, errNew := next.Locate(context.Background(), k, strategies.Write)
			if errOld == nil && (errNew != nil || n != o) {
				lose[o] = true
			}
		}
	}
	var out []string
	for _, s := range old.Shards() {
		if lose[s] {
			out = append(out, s)
		}
	}
	return out, nil
}

// DirectoryMove reassigns one key of a directory strategy: the rows of
// every table that directory places, with that key, move to shard To, and
// the directory entry follows at the cutover.
type DirectoryMove struct {
	Strategy string `json:"strategy"`
	Key      string `json:"key"` // as the directory table stores it
	To       string `json:"to"`
	// From is the directory's entry when the job was planned; the cutover
	// changes the entry only if it still says so.
	From string `json:"from,omitempty"`
}

func (m DirectoryMove) String() string { return fmt.Sprintf("%s:%s=%s", m.Strategy, m.Key, m.To) }

// ParseDirectoryMove parses "strategy:key=shard" (as given to reshard
// --move); the key is normalised by the plan, which knows its type.
func ParseDirectoryMove(s string) (DirectoryMove, error) {
	name, rest, ok1 := strings.Cut(s, ":")
	i := strings.LastIndexByte(rest, '=')
	if !ok1 || i < 0 || name == "" || rest[:i] == "" || rest[i+1:] == "" {
		return DirectoryMove{}, fmt.Errorf("directory move %q: want strategy:key=shard", s)
	}
	return DirectoryMove{Strategy: name, Key: rest[:i], To: rest[i+1:]}, nil
}

func encodeMoves(moves []DirectoryMove) string {
	if len(moves) == 0 {
		return ""
	}
	b, _ := json.Marshal(moves) // plain strings: cannot fail
	return string(b)
}

func decodeMoves(text string) ([]DirectoryMove, error) {
	if text == "" {
		return nil, nil
	}
	var moves []DirectoryMove
	if err := json.Unmarshal([]byte(text), &moves); err != nil {
		return nil, fmt.Errorf("the job's directory moves: %w", err)
	}
	return moves, nil
}

// directoryPlacement moves the rows of some directory keys; every other
// key stays where its entry puts it.
type directoryPlacement struct {
	kt    strategies.KeyType
	moves map[string]DirectoryMove // by key
	from  []string                 // in map order
	to    []string
}

// newDirectoryPlacement builds the placement of moves (one strategy's,
// with From known) in the order of shards.
func newDirectoryPlacement(kt strategies.KeyType, moves []DirectoryMove, shards []string) *directoryPlacement {
	p := &directoryPlacement{kt: kt, moves: map[string]DirectoryMove{}}
	from, to := map[string]bool{}, map[string]bool{}
	for _, m := range moves {
		p.moves[m.Key] = m
		from[m.From], to[m.To] = true, true
	}
	for _, s := range shards {
		if from[s] {
			p.from = append(p.from, s)
		}
		if to[s] {
			p.to = append(p.to, s)
		}
	}
	return p
}

func (p *directoryPlacement) sources() []string           { return p.from }
func (p *directoryPlacement) destinations() []string      { return p.to }
func (p *directoryPlacement) keyType() strategies.KeyType { return p.kt }

// normal is key in the directory's form (strategies.Key.String): a
// timestamp's Postgres text differs from it.
func (p *directoryPlacement) normal(key string) (string, error) {
	if p.kt == strategies.KeyInt || p.kt == strategies.KeyText {
		return key, nil
	}
	k, err := strategies.ParseKeyIn(p.kt, key, time.UTC)
	if err != nil {
		return "", err
	}
	return k.String(), nil
}

func (p *directoryPlacement) newOwner(_ context.Context, key, here string) (string, error) {
	return p.owner(key, here, true)
}

func (p *directoryPlacement) oldOwner(_ context.Context, key, here string) (string, error) {
	return p.owner(key, here, false)
}

// owner follows key's move from here: forward (a row on its old shard goes
// to the new one) or back (a row on its new shard came from the old one).
// A key that does not move from here stays.
func (p *directoryPlacement) owner(key, here string, forward bool) (string, error) {
	key, err := p.normal(key)
	if err != nil {
		return "", err
	}
	m, ok := p.moves[key]
	switch {
	case ok && forward && m.From == here:
		return m.To, nil
	case ok && !forward && m.To == here:
		return m.From, nil
	}
	return here, nil
}

func (p *directoryPlacement) newOwnerSQL(keyExpr, here string) (string, bool) {
	return p.ownerSQL(keyExpr, here, func(m DirectoryMove) (string, string) { return m.From, m.To })
}

func (p *directoryPlacement) oldOwnerSQL(keyExpr, here string) (string, bool) {
	return p.ownerSQL(keyExpr, here, func(m DirectoryMove) (string, string) { return m.To, m.From })
}

// ownerSQL looks the key up in a jsonb object of the keys that leave
// here: one hash probe per row, however many keys move.
func (p *directoryPlacement) ownerSQL(keyExpr, here string, dir func(DirectoryMove) (at, goes string)) (string, bool) {
	if p.kt != strategies.KeyInt && p.kt != strategies.KeyText && p.kt != strategies.KeyUUID {
		return "", false // Postgres' text of a timestamp is not the directory's
	}
	leave := map[string]string{}
	for k, m := range p.moves {
		if at, goes := dir(m); at == here {
			leave[k] = goes
		}
	}
	if len(leave) == 0 {
		return quoteLiteral(here), true
	}
	b, _ := json.Marshal(leave)
	return fmt.Sprintf("coalesce(%s::jsonb ->> (%s)::text, %s)", quoteLiteral(string(b)), keyExpr, quoteLiteral(here)), true
}

// movesOf are the moves of one strategy, sorted by key.
func movesOf(moves []DirectoryMove, strategy string) []DirectoryMove {
	var out []DirectoryMove
	for _, m := range moves {
		if m.Strategy == strategy {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b DirectoryMove) int { return strings.Compare(a.Key, b.Key) })
	return out
}
