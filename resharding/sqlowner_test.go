package resharding

import (
	"context"
	"fmt"
	"testing"

	"github.com/shardproxy/shardproxy/config"
)

// TestOwnerSQL checks that Postgres, given ownerSQL, places keys exactly
// where the strategies package does.
func TestOwnerSQL(t *testing.T) {
	c := NewCluster(t)
	conn := c.Conn(t, "s0")
	ctx := context.Background()
	tests := []struct {
		name string
		yaml string // strategy "s" in a map with shards a, b, c
		keys string // SQL producing the keys as text, column k
	}{
		{"hash int 2", "{type: hash, key_type: int, shards: [a, b]}", "SELECT g::text FROM generate_series(-3000, 3000) g"},
		{"hash int 3", "{type: hash, key_type: int, shards: [a, b, c]}", "SELECT (g * 7919)::text FROM generate_series(-3000, 3000) g UNION ALL SELECT '9223372036854775807' UNION ALL SELECT '-9223372036854775808'"},
		{"hash text 3", "{type: hash, key_type: text, shards: [c, a, b]}", "SELECT 'key-' || g FROM generate_series(1, 3000) g UNION ALL SELECT ''"},
		{"hash uuid 3", "{type: hash, key_type: uuid, shards: [a, b, c]}", "SELECT md5(g::text)::uuid::text FROM generate_series(1, 3000) g"},
		{"range int", "{type: range, key_type: int, ranges: [{upper: 0, shard: a}, {upper: 500, shard: b}, {upper: null, shard: c}]}", "SELECT g::text FROM generate_series(-1000, 1000) g"},
		{"range text", "{type: range, key_type: text, ranges: [{upper: 'g', shard: a}, {upper: 'n', shard: b}, {upper: null, shard: c}]}", "SELECT chr(g) || 'x' FROM generate_series(65, 122) g"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := MustParse(t, fmt.Sprintf(`
users: [{name: app, password: secret}]
shards: [{name: a, dsn: "postgres://x@h/a"}, {name: b, dsn: "postgres://x@h/b"}, {name: c, dsn: "postgres://x@h/c"}]
strategies: {s: %s}
`, tt.yaml))
			sc := cfg.StrategyByName("s")
			expr, ok := ownerSQL(sc, "k")
			if !ok {
				t.Fatal("no SQL form")
			}
			strat := BuildStrats(t, cfg)["s"]
			rows, err := conn.Query(ctx, fmt.Sprintf("SELECT k, %s FROM (%s) AS keys(k)", expr, tt.keys))
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			n := 0
			for rows.Next() {
				var k, got string
				if err := rows.Scan(&k, &got); err != nil {
					t.Fatal(err)
				}
				want, err := Locate(ctx, strat, k)
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Errorf("key %q: SQL says %s, strategy says %s", k, got, want)
				}
				n++
			}
			if rows.Err() != nil || n == 0 {
				t.Fatalf("%d keys, %v", n, rows.Err())
			}
		})
	}
	if _, ok := ownerSQL(&config.Strategy{Type: config.StrategyConsistent, KeyType: config.KeyInt, Shards: []string{"a"}}, "k"); ok {
		t.Error("consistent hashing has no SQL form")
	}
}
