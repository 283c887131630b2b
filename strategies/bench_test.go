package strategies

import (
	"context"
	"strconv"
	"testing"

	"github.com/shardproxy/shardproxy/config"
)

func BenchmarkHashInt(b *testing.B) {
	s := newHash("h", KeyInt, shardNames(8))
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Locate(ctx, Key{Type: KeyInt, Int: int64(i)}, Read); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHashText(b *testing.B) {
	s := newHash("h", KeyText, shardNames(8))
	ctx := context.Background()
	k := Key{Type: KeyText, Text: "customer-000000000042"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Locate(ctx, k, Read); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkConsistent(b *testing.B) {
	s := newConsistent("c", KeyInt, shardNames(8), 0)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Locate(ctx, Key{Type: KeyInt, Int: int64(i)}, Read); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRange(b *testing.B) {
	var ranges []config.Range
	for i := 1; i <= 64; i++ {
		ranges = append(ranges, config.Range{Upper: strconv.Itoa(i * 1000), Shard: "s" + strconv.Itoa(i%8)})
	}
	ranges = append(ranges, config.Range{Unbounded: true, Shard: "s0"})
	s, err := newRange("r", KeyInt, ranges)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Locate(ctx, Key{Type: KeyInt, Int: int64(i % 70000)}, Read); err != nil {
			b.Fatal(err)
		}
	}
}

// Routing runs per statement; hash, range and consistent of an int key must not allocate.
func TestLocateIntDoesNotAllocate(t *testing.T) {
	h := newHash("h", KeyInt, shardNames(3))
	r, err := newRange("r", KeyInt, []config.Range{{Upper: "10", Shard: "s0"}, {Unbounded: true, Shard: "s1"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, s := range []Strategy{h, r, newConsistent("c", KeyInt, shardNames(3), 0)} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := s.Locate(ctx, Key{Type: KeyInt, Int: 12345}, Read); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Locate, want 0", s.Name(), allocs)
		}
	}
}
