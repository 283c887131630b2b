package strategies

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/shardproxy/shardproxy/config"
)

// rangeStrategy holds half-open ranges [previous upper, upper): the first
// starts at -infinity, the last may run to +infinity. A key equal to an
// upper bound therefore belongs to the next range, as in Postgres range
// partitioning (FOR VALUES FROM (lower) TO (upper)).
type rangeStrategy struct {
	name    string
	keyType KeyType
	uppers  []Key    // strictly increasing bounds of the bounded ranges
	owners  []string // owners[i] owns keys below uppers[i]; owners[len(uppers)], if present, owns the rest
	shards  []string // distinct owners in range order
}

func newRange(name string, t KeyType, ranges []config.Range) (*rangeStrategy, error) {
	if t == KeyUUID {
		return nil, fmt.Errorf("strategy %q: range strategies take int, text or timestamp keys, not uuid", name)
	}
	if len(ranges) == 0 {
		return nil, fmt.Errorf("strategy %q: no ranges", name)
	}
	r := &rangeStrategy{name: name, keyType: t}
	seen := map[string]bool{}
	for i, rg := range ranges {
		if !seen[rg.Shard] {
			seen[rg.Shard] = true
			r.shards = append(r.shards, rg.Shard)
		}
		r.owners = append(r.owners, rg.Shard)
		if rg.Unbounded {
			if i != len(ranges)-1 {
				return nil, fmt.Errorf("strategy %q: only the last range may be unbounded", name)
			}
			break
		}
		// A timestamptz bound without an offset is UTC (see config).
		upper, err := ParseKeyIn(t, rg.Upper, time.UTC)
		if err != nil {
			return nil, fmt.Errorf("strategy %q: range upper %q: %w", name, rg.Upper, err)
		}
		if i > 0 && compareKeys(r.uppers[i-1], upper) >= 0 {
			return nil, fmt.Errorf("strategy %q: range uppers must increase: %q after %q", name, rg.Upper, ranges[i-1].Upper)
		}
		r.uppers = append(r.uppers, upper)
	}
	return r, nil
}

func (r *rangeStrategy) Name() string     { return r.name }
func (r *rangeStrategy) KeyType() KeyType { return r.keyType }
func (r *rangeStrategy) Shards() []string { return r.shards }

func (r *rangeStrategy) Locate(_ context.Context, k Key, _ Intent) (string, error) {
	if err := checkKeyType(r.name, r.keyType, k); err != nil {
		return "", err
	}
	// Find the first upper strictly greater than k.
	lo, hi := 0, len(r.uppers)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if compareKeys(r.uppers[mid], k) <= 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo >= len(r.owners) {
		return "", &pgconn.PgError{
			Severity: "ERROR",
			Code:     codeCheckViolation,
			Message:  fmt.Sprintf("no shard range of strategy %q contains key %s", r.name, k),
		}
	}
	return r.owners[lo], nil
}

// compareKeys orders two keys of the same type; text compares bytewise,
// like the C collation.
func compareKeys(a, b Key) int {
	switch a.Type {
	case KeyInt:
		switch {
		case a.Int < b.Int:
			return -1
		case a.Int > b.Int:
			return 1
		}
		return 0
	case KeyText:
		return strings.Compare(a.Text, b.Text)
	case KeyTimestamp, KeyTimestampTZ:
		return a.Time.Compare(b.Time)
	}
	return 0
}
