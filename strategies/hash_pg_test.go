package strategies

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestHashMatchesPostgres is the acceptance test of the hash strategy: for
// each key type and shard count, Postgres' own hash partitioning must put
// every key in partition i exactly when the strategy names shard i.
func TestHashMatchesPostgres(t *testing.T) {
	_, dsn := testDatabase(t, "hashcheck")
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	rng := rand.New(rand.NewPCG(1, 2))
	types := []struct {
		sqlType string
		keyType KeyType
		keys    []string // text forms, inserted with a cast from text
	}{
		{"bigint", KeyInt, intKeys64(rng)},
		{"int4", KeyInt, intKeysN(rng, math.MinInt32, math.MaxInt32)},
		{"int2", KeyInt, intKeysN(rng, math.MinInt16, math.MaxInt16)},
		{"text", KeyText, textKeys(rng)},
		{"uuid", KeyUUID, uuidKeys(rng)},
	}
	for _, tc := range types {
		for _, n := range []int{2, 3, 5} {
			t.Run(fmt.Sprintf("%s_%d", tc.sqlType, n), func(t *testing.T) {
				table := fmt.Sprintf("h_%s_%d", tc.sqlType, n)
				ddl := fmt.Sprintf("CREATE TABLE %s (k %s) PARTITION BY HASH (k);", table, tc.sqlType)
				for i := range n {
					ddl += fmt.Sprintf("CREATE TABLE %s_p%d PARTITION OF %s FOR VALUES WITH (MODULUS %d, REMAINDER %d);", table, i, table, n, i)
				}
				if _, err := conn.Exec(ctx, ddl); err != nil {
					t.Fatal(err)
				}
				if _, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s SELECT unnest($1::text[]::%s[])", table, tc.sqlType), tc.keys); err != nil {
					t.Fatal(err)
				}
				shards := shardNames(n)
				s := newHash("h", tc.keyType, shards)
				rows, err := conn.Query(ctx, fmt.Sprintf("SELECT k::text, tableoid::regclass::text FROM %s", table))
				if err != nil {
					t.Fatal(err)
				}
				var text, part string
				checked, mismatches := 0, 0
				_, err = pgx.ForEachRow(rows, []any{&text, &part}, func() error {
					k, err := ParseKey(tc.keyType, text)
					if err != nil {
						return err
					}
					got, err := s.Locate(ctx, k, Read)
					if err != nil {
						return err
					}
					want := "s" + strings.TrimPrefix(part, table+"_p")
					if got != want {
						if mismatches++; mismatches <= 10 {
							t.Errorf("key %q: strategy says %s, Postgres put it in %s", text, got, part)
						}
					}
					checked++
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if checked != len(tc.keys) {
					t.Fatalf("checked %d keys, inserted %d", checked, len(tc.keys))
				}
				if mismatches > 0 {
					t.Errorf("%d of %d keys misplaced", mismatches, checked)
				}
			})
		}
	}
}

func intKeys64(rng *rand.Rand) []string {
	keys := intKeysN(rng, -100000, 100000)
	for range 3000 {
		keys = append(keys, strconv.FormatInt(int64(rng.Uint64()), 10))
	}
	// Around the int4 range, where hashint8extended's folding changes.
	for _, v := range []int64{math.MinInt64, math.MinInt64 + 1, math.MaxInt64, math.MaxInt64 - 1,
		math.MaxInt32, math.MaxInt32 + 1, math.MinInt32, math.MinInt32 - 1, 1 << 32, -(1 << 32), 0, -1} {
		keys = append(keys, strconv.FormatInt(v, 10))
	}
	return keys
}

// intKeysN returns the extremes, every value near zero and 3000 random
// values of [lo, hi].
func intKeysN(rng *rand.Rand, lo, hi int64) []string {
	var keys []string
	for _, v := range []int64{lo, lo + 1, hi, hi - 1} {
		keys = append(keys, strconv.FormatInt(v, 10))
	}
	for v := max(lo, -1000); v <= min(hi, 1000); v++ {
		keys = append(keys, strconv.FormatInt(v, 10))
	}
	for range 3000 {
		keys = append(keys, strconv.FormatInt(lo+rng.Int64N(hi-lo+1), 10))
	}
	return keys
}

func textKeys(rng *rand.Rand) []string {
	alphabet := []rune("abcXYZ019 -_é漢字😀\t'\"\\")
	keys := []string{"", "a", "ab", "abc", "abcd", "abcdefghijkl", "abcdefghijklm", strings.Repeat("x", 1000)}
	for range 4000 {
		// Lengths 0..40 runes cover every tail length of the 12-byte blocks.
		r := make([]rune, rng.IntN(41))
		for i := range r {
			r[i] = alphabet[rng.IntN(len(alphabet))]
		}
		keys = append(keys, string(r))
	}
	return keys
}

func uuidKeys(rng *rand.Rand) []string {
	keys := []string{"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"}
	for range 4000 {
		k := Key{Type: KeyUUID}
		for i := range k.UUID {
			k.UUID[i] = byte(rng.UintN(256))
		}
		keys = append(keys, k.String())
	}
	return keys
}

// TestHashFunctionsMatchPostgres compares the ported functions themselves,
// before the partition combine, so a failure points at the function.
func TestHashFunctionsMatchPostgres(t *testing.T) {
	_, dsn := testDatabase(t, "hashfuncs")
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	const seed = int64(hashPartitionSeed)
	tests := []struct {
		sql  string
		arg  any
		want uint64
	}{
		{"SELECT hashint8extended($1::int8, $2)", int64(-1), hashInt8Extended(-1, hashPartitionSeed)},
		{"SELECT hashint8extended($1::int8, $2)", int64(math.MaxInt64), hashInt8Extended(math.MaxInt64, hashPartitionSeed)},
		{"SELECT hashint4extended($1::int4, $2)", int64(-123456), hashInt8Extended(-123456, hashPartitionSeed)},
		{"SELECT hashint2extended($1::int2, $2)", int64(-5), hashInt8Extended(-5, hashPartitionSeed)},
		{"SELECT hashint8extended($1::int8, 0)", int64(77), hashInt8Extended(77, 0)},
		{"SELECT hashtextextended($1::text, $2)", "", hashBytesExtended("", hashPartitionSeed)},
		{"SELECT hashtextextended($1::text, $2)", "héllo wörld, 13+ bytes", hashBytesExtended("héllo wörld, 13+ bytes", hashPartitionSeed)},
		{"SELECT hashtextextended($1::text, 0)", "abcdefghijk", hashBytesExtended("abcdefghijk", 0)},
		{"SELECT uuid_hash_extended($1::uuid, $2)", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
			hashBytesExtended([]byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}, hashPartitionSeed)},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%v", tc.sql, tc.arg), func(t *testing.T) {
			args := []any{tc.arg}
			if strings.Contains(tc.sql, "$2") {
				args = append(args, seed)
			}
			var got int64
			if err := conn.QueryRow(t.Context(), tc.sql, args...).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if uint64(got) != tc.want {
				t.Fatalf("Postgres %#x, ours %#x", uint64(got), tc.want)
			}
		})
	}
}
