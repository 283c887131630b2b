package resharding

import (
	"fmt"
	"strings"

	"github.com/shardproxy/shardproxy/config"
)

// ownerSQL is an SQL expression naming the shard that strategy s places
// the value of keyExpr on, for the strategies Postgres can compute itself:
// hash (Postgres' own partition hash, the one strategies.hash ports) and
// range over int or text keys. ok is false for the others (consistent
// hashing uses xxhash; timestamps depend on parsing): callers then scan
// the keys and locate them in Go. It lets verification aggregate on the
// server, which keeps the cutover pause short.
func ownerSQL(s *config.Strategy, keyExpr string) (expr string, ok bool) {
	switch s.Type {
	case config.StrategyHash:
		var h string
		switch s.KeyType {
		case config.KeyInt:
			h = fmt.Sprintf("hashint8extended((%s)::int8, %d)", keyExpr, hashPartitionSeed)
		case config.KeyText:
			h = fmt.Sprintf("hashtextextended((%s)::text, %d)", keyExpr, hashPartitionSeed)
		case config.KeyUUID:
			h = fmt.Sprintf("uuid_hash_extended((%s)::uuid, %d)", keyExpr, hashPartitionSeed)
		default:
			return "", false
		}
		// compute_partition_hash_value: hash_combine64(0, h) is h plus a
		// constant, modulo 2^64, read unsigned; then modulo the shard count.
		// In int8 arithmetic (numeric is several times slower, and this
		// runs per row in the copy, the verification and the delete in
		// the cutover pause): add the 32-bit halves with the carry, then
		// (hi * 2^32 + lo) mod n = ((hi mod n) * (2^32 mod n) + lo mod n) mod n,
		// where no intermediate exceeds 2^33.
		names := make([]string, len(s.Shards))
		for i, n := range s.Shards {
			names[i] = quoteLiteral(n)
		}
		n := uint64(len(s.Shards))
		lo := fmt.Sprintf("((%s) & 4294967295) + %d", h, hashCombineConst&0xFFFFFFFF)
		hi := fmt.Sprintf("((((%s) >> 32) & 4294967295) + %d + ((%s) >> 32)) & 4294967295", h, hashCombineConst>>32, lo)
		return fmt.Sprintf("(ARRAY[%s])[(((%s) %% %d * %d + ((%s) & 4294967295) %% %d) %% %d)::int + 1]",
			strings.Join(names, ", "), hi, n, (uint64(1)<<32)%n, lo, n, n), true
	case config.StrategyRange:
		var b strings.Builder
		b.WriteString("CASE")
		for _, r := range s.Ranges {
			if r.Unbounded {
				fmt.Fprintf(&b, " ELSE %s", quoteLiteral(r.Shard))
				break
			}
			switch s.KeyType {
			case config.KeyInt:
				fmt.Fprintf(&b, " WHEN (%s)::int8 < %s::int8 THEN %s", keyExpr, quoteLiteral(r.Upper), quoteLiteral(r.Shard))
			case config.KeyText:
				fmt.Fprintf(&b, ` WHEN (%s)::text COLLATE "C" < %s THEN %s`, keyExpr, quoteLiteral(r.Upper), quoteLiteral(r.Shard))
			default:
				return "", false
			}
		}
		b.WriteString(" END") // NULL past the last bounded range: no owner
		return b.String(), true
	}
	return "", false
}

const (
	hashPartitionSeed uint64 = 0x7A5B22367996DCFD // HASH_PARTITION_SEED, partbounds.c
	hashCombineConst  uint64 = 0x49a0f4dd15e5a8e3 // hash_combine64's constant, hashfn.h
)

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
