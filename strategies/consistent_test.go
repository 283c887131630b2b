package strategies

import (
	"context"
	"fmt"
	"testing"
)

func shardNames(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("s%d", i)
	}
	return s
}

func locateAll(t testing.TB, s Strategy, keys []Key) []string {
	t.Helper()
	out := make([]string, len(keys))
	for i, k := range keys {
		shard, err := s.Locate(context.Background(), k, Read)
		if err != nil {
			t.Fatalf("Locate(%v): %v", k, err)
		}
		out[i] = shard
	}
	return out
}

func intKeys(n int) []Key {
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = Key{Type: KeyInt, Int: int64(i)}
	}
	return keys
}

// The golden table pins placement across processes and releases: if it
// changes, every consistent-hashed row in production is on the wrong shard.
func TestConsistentGolden(t *testing.T) {
	s := newConsistent("ring", KeyText, []string{"s0", "s1", "s2"}, 0)
	golden := map[string]string{
		"customer-0": "s2", "customer-1": "s0", "customer-2": "s0", "customer-3": "s2", "customer-4": "s0",
		"customer-5": "s0", "customer-6": "s1", "customer-7": "s0", "customer-8": "s0", "customer-9": "s2",
		"customer-10": "s1", "customer-11": "s0", "customer-12": "s1", "customer-13": "s0", "customer-14": "s1",
		"customer-15": "s2", "customer-16": "s0", "customer-17": "s2", "customer-18": "s2", "customer-19": "s0",
	}
	for key, want := range golden {
		got, err := s.Locate(context.Background(), Key{Type: KeyText, Text: key}, Write)
		if err != nil || got != want {
			t.Errorf("Locate(%q) = %q, %v; want %q", key, got, err, want)
		}
	}
	// Keys hash by canonical text, so int 42 and text "42" agree.
	si := newConsistent("ring", KeyInt, []string{"s0", "s1", "s2"}, 0)
	a, _ := si.Locate(context.Background(), Key{Type: KeyInt, Int: 42}, Read)
	b, _ := s.Locate(context.Background(), Key{Type: KeyText, Text: "42"}, Read)
	if a != b {
		t.Errorf("int 42 on %s, text \"42\" on %s", a, b)
	}
}

func TestConsistentDeterministic(t *testing.T) {
	keys := intKeys(10000)
	a := locateAll(t, newConsistent("ring", KeyInt, shardNames(4), 271), keys)
	b := locateAll(t, newConsistent("ring", KeyInt, shardNames(4), 271), keys)
	for i := range keys {
		if a[i] != b[i] {
			t.Fatalf("key %d: first build %s, second %s", i, a[i], b[i])
		}
	}
}

func TestConsistentAddShardMovesAboutOneNth(t *testing.T) {
	keys := intKeys(100000)
	for n := 2; n <= 6; n++ {
		t.Run(fmt.Sprintf("%d_to_%d", n, n+1), func(t *testing.T) {
			before := locateAll(t, newConsistent("ring", KeyInt, shardNames(n), 0), keys)
			after := locateAll(t, newConsistent("ring", KeyInt, shardNames(n+1), 0), keys)
			newShard := fmt.Sprintf("s%d", n)
			moved, betweenOld := 0, 0
			for i := range keys {
				if before[i] == after[i] {
					continue
				}
				moved++
				if after[i] != newShard {
					betweenOld++
				}
			}
			ideal := float64(len(keys)) / float64(n+1)
			ratio := float64(moved) / ideal
			t.Logf("moved %d (ideal %.0f, ratio %.2f), between old shards %d", moved, ideal, ratio, betweenOld)
			if ratio < 0.5 || ratio > 1.6 {
				t.Errorf("moved %d keys, %.2f times the ideal %.0f", moved, ratio, ideal)
			}
			// Bounded loads (Load 1.25) may push a partition from a full
			// old shard to another old shard when the new shard lowers the
			// bound: measured 0 for 2..6 -> 3..6 and 2.2% of keys for
			// 6 -> 7. Allow a little of it; plain consistent hashing would
			// have none but lets one shard carry 1.4x the average at 7.
			if limit := len(keys) / 20; betweenOld > limit {
				t.Errorf("%d keys moved between old shards, more than %d", betweenOld, limit)
			}
		})
	}
}

// Locate hashes keys itself to avoid allocating; it must agree with the
// library's LocateKey on the canonical text.
func TestConsistentMatchesLibraryLocateKey(t *testing.T) {
	keys := intKeys(1000)
	keys = append(keys, Key{Type: KeyInt, Int: -1 << 63}, Key{Type: KeyText, Text: "漢字"},
		Key{Type: KeyUUID, UUID: [16]byte{1, 2, 3}})
	for _, k := range keys {
		s := newConsistent("ring", k.Type, shardNames(5), 0)
		got, err := s.Locate(context.Background(), k, Read)
		if err != nil {
			t.Fatal(err)
		}
		if want := s.ring.LocateKey([]byte(k.String())).String(); got != want {
			t.Fatalf("Locate(%s) = %s, LocateKey = %s", k, got, want)
		}
	}
}
