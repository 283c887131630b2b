package proxy_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// BenchmarkPointSelect is pgbench -S in miniature: one keyed point read
// per iteration over one connection, in the three ways pgbench -M sends it,
// through the proxy and straight to the shard that owns the key. The
// difference between the two is the proxy's cost per transaction: with
// -benchmem, allocs/op through the proxy minus allocs/op direct is what
// the proxy allocates (the pgx client's own allocations are in both).
//
//	go test ./proxy/ -run '^$' -bench PointSelect -benchmem
func BenchmarkPointSelect(b *testing.B) {
	f := startFixture(b, fixtureOptions{Body: `
strategies:
  by_aid: {type: hash, key_type: int, shards: [s0, s1]}
tables:
  accounts: {key: aid, strategy: by_aid}
default_shard: s0
`})
	ctx := context.Background()
	setup := f.Connect(b)
	for _, q := range []string{
		"CREATE TABLE accounts (aid int PRIMARY KEY, abalance int NOT NULL)",
		"INSERT INTO accounts VALUES (7, 700)", // s1 owns 7 (checked below)
	} {
		if _, err := setup.Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	const sel = "SELECT abalance FROM accounts WHERE aid = $1"
	for _, mode := range []struct {
		name string
		mode pgx.QueryExecMode
	}{
		{"simple", pgx.QueryExecModeSimpleProtocol},   // pgbench -M simple: Query
		{"extended", pgx.QueryExecModeExec},           // -M extended: unnamed Parse/Bind/Describe/Execute/Sync
		{"prepared", pgx.QueryExecModeCacheStatement}, // -M prepared: Bind/Execute/Sync of a named statement
	} {
		for _, via := range []string{"proxy", "direct"} {
			var c *pgx.Conn
			if via == "proxy" {
				c = f.Connect(b)
			} else {
				c = f.Direct(b, "s1")
			}
			b.Run(mode.name+"/"+via, func(b *testing.B) {
				var v int32
				for b.Loop() {
					if err := c.QueryRow(ctx, sel, mode.mode, 7).Scan(&v); err != nil {
						b.Fatal(err)
					}
					if v != 700 {
						b.Fatalf("abalance = %d, want 700", v)
					}
				}
			})
		}
	}
}
