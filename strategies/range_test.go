package strategies

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/shardproxy/shardproxy/config"
)

func TestRangeLocate(t *testing.T) {
	ints := []config.Range{{Upper: "1000", Shard: "s0"}, {Upper: "2000", Shard: "s1"}, {Upper: "5000", Shard: "s0"}}
	intsOpen := append(slices.Clone(ints), config.Range{Unbounded: true, Shard: "s2"})
	texts := []config.Range{{Upper: "g", Shard: "s0"}, {Upper: "n", Shard: "s1"}, {Unbounded: true, Shard: "s2"}}
	times := []config.Range{{Upper: "2024-01-01", Shard: "old"}, {Upper: "2025-01-01 00:00:00+00", Shard: "y2024"}, {Unbounded: true, Shard: "new"}}
	tests := []struct {
		name   string
		t      KeyType
		ranges []config.Range
		key    string
		want   string // "" means the 23514 error
	}{
		{"min int", KeyInt, ints, "-9223372036854775808", "s0"},
		{"below first upper", KeyInt, ints, "999", "s0"},
		{"equal to upper goes to next", KeyInt, ints, "1000", "s1"},
		{"last bounded range", KeyInt, ints, "4999", "s0"},
		{"at last upper, bounded", KeyInt, ints, "5000", ""},
		{"at last upper, unbounded", KeyInt, intsOpen, "5000", "s2"},
		{"max int, unbounded", KeyInt, intsOpen, "9223372036854775807", "s2"},
		{"empty text", KeyText, texts, "", "s0"},
		{"text equal to upper", KeyText, texts, "g", "s1"},
		{"text bytewise: upper case sorts first", KeyText, texts, "Zebra", "s0"},
		{"text bytewise: non-ASCII sorts last", KeyText, texts, "é", "s2"},
		{"timestamp before", KeyTimestamp, times, "2023-12-31 23:59:59.999999+00", "old"},
		{"timestamp at bound", KeyTimestamp, times, "2024-01-01T00:00:00Z", "y2024"},
		{"timestamptz zone counts", KeyTimestampTZ, times, "2025-01-01 01:00:00+02", "y2024"},
		{"timestamp ignores the zone", KeyTimestamp, times, "2025-01-01 01:00:00+02", "new"},
		{"timestamptz infinity", KeyTimestampTZ, times, "infinity", "new"},
		{"timestamp -infinity", KeyTimestamp, times, " -Infinity ", "old"},
		{"timestamptz epoch", KeyTimestampTZ, times, "epoch", "old"},
		{"timestamp after", KeyTimestamp, times, "2025-01-01", "new"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newRange("by_id", tc.t, tc.ranges)
			if err != nil {
				t.Fatal(err)
			}
			k, err := ParseKey(tc.t, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Locate(context.Background(), k, Read)
			if tc.want != "" {
				if err != nil || got != tc.want {
					t.Fatalf("Locate(%s) = %q, %v; want %q", tc.key, got, err, tc.want)
				}
				return
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
				t.Fatalf("Locate(%s) = %q, %v; want SQLSTATE 23514", tc.key, got, err)
			}
			if want := `no shard range of strategy "by_id" contains key ` + k.String(); pgErr.Message != want {
				t.Fatalf("message %q, want %q", pgErr.Message, want)
			}
		})
	}
}

func TestRangeInvalid(t *testing.T) {
	tests := []struct {
		name   string
		t      KeyType
		ranges []config.Range
	}{
		{"no ranges", KeyInt, nil},
		{"uuid", KeyUUID, []config.Range{{Unbounded: true, Shard: "s0"}}},
		{"decreasing", KeyInt, []config.Range{{Upper: "10", Shard: "s0"}, {Upper: "5", Shard: "s1"}}},
		{"equal uppers", KeyText, []config.Range{{Upper: "a", Shard: "s0"}, {Upper: "a", Shard: "s1"}}},
		{"unbounded in the middle", KeyInt, []config.Range{{Unbounded: true, Shard: "s0"}, {Upper: "5", Shard: "s1"}}},
		{"bad bound", KeyInt, []config.Range{{Upper: "ten", Shard: "s0"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := newRange("r", tc.t, tc.ranges); err == nil {
				t.Fatal("newRange succeeded")
			}
		})
	}
}

// Property: ranges are half-open. For random bounds, every key lands in
// the one range with lower <= key < upper (checked against a linear scan),
// and a key equal to an upper always lands in the range after it.
func TestRangeHalfOpenProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for iter := range 200 {
		n := 1 + rng.IntN(8)
		bounds := make([]int64, 0, n)
		for len(bounds) < n {
			b := rng.Int64N(2000) - 1000
			if !slices.Contains(bounds, b) {
				bounds = append(bounds, b)
			}
		}
		slices.Sort(bounds)
		unbounded := rng.IntN(2) == 0
		var ranges []config.Range
		for i, b := range bounds {
			ranges = append(ranges, config.Range{Upper: strconv.FormatInt(b, 10), Shard: "r" + strconv.Itoa(i)})
		}
		if unbounded {
			ranges = append(ranges, config.Range{Unbounded: true, Shard: "r" + strconv.Itoa(n)})
		}
		s, err := newRange("p", KeyInt, ranges)
		if err != nil {
			t.Fatal(err)
		}
		reference := func(v int64) string {
			lower := int64(math.MinInt64)
			for i, b := range bounds {
				if lower <= v && v < b {
					return "r" + strconv.Itoa(i)
				}
				lower = b
			}
			if unbounded {
				return "r" + strconv.Itoa(n)
			}
			return ""
		}
		probe := []int64{math.MinInt64, math.MaxInt64}
		for _, b := range bounds {
			probe = append(probe, b-1, b, b+1)
		}
		for range 50 {
			probe = append(probe, rng.Int64N(2400)-1200)
		}
		for _, v := range probe {
			got, err := s.Locate(context.Background(), Key{Type: KeyInt, Int: v}, Read)
			want := reference(v)
			if want == "" && err == nil || want != "" && got != want {
				t.Fatalf("iteration %d, bounds %v unbounded=%v: Locate(%d) = %q, %v; want %q", iter, bounds, unbounded, v, got, err, want)
			}
		}
		for i, b := range bounds {
			got, _ := s.Locate(context.Background(), Key{Type: KeyInt, Int: b}, Read)
			if next := "r" + strconv.Itoa(i+1); (i+1 < n || unbounded) && got != next {
				t.Fatalf("bounds %v: key %d equal to upper %d went to %q, want the next range %s", bounds, b, i, got, next)
			}
		}
	}
}

func TestRangeShardsDistinctInOrder(t *testing.T) {
	s, err := newRange("r", KeyInt, []config.Range{{Upper: "1", Shard: "b"}, {Upper: "2", Shard: "a"}, {Upper: "3", Shard: "b"}, {Unbounded: true, Shard: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Shards(), []string{"b", "a", "c"}; !slices.Equal(got, want) {
		t.Fatalf("Shards() = %v, want %v", got, want)
	}
}

func TestLocateRejectsWrongKeyType(t *testing.T) {
	strategies := []Strategy{
		newHash("h", KeyInt, []string{"s0"}),
		newConsistent("c", KeyInt, []string{"s0"}, 0),
	}
	r, err := newRange("r", KeyInt, []config.Range{{Unbounded: true, Shard: "s0"}})
	if err != nil {
		t.Fatal(err)
	}
	strategies = append(strategies, r)
	for _, s := range strategies {
		t.Run(s.Name(), func(t *testing.T) {
			_, err := s.Locate(context.Background(), Key{Type: KeyText, Text: "1"}, Read)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42804" {
				t.Fatalf("Locate(text key) error = %v, want SQLSTATE 42804", err)
			}
		})
	}
}
